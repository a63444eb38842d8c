//! The domain types, where the core's modules have always found them (see [`crate::domain`]).

pub use crate::domain::*;
