pub mod data;
pub mod export;
pub mod train;
pub mod triage;
