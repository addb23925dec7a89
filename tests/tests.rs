//! The one integration test binary; each module covers one component through real processes
//! and sockets.

mod ctl;
