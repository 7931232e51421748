//! What operators and tools read: health, metrics, the OpenAPI document, the reports.

pub mod health;
pub mod openapi;
pub mod reports;
