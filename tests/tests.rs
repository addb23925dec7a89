//! The single integration test binary; each module covers one part of the product.

mod config;
