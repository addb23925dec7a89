//! Per door: direct methods and desired patches become bus requests; polled state becomes reported properties.
