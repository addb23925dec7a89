//! The TOML device map: raw serde model, resolution into a validated model, errors with file:line:column.
