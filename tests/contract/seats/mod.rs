//! `Seats`: the one write path of holds, sessions and commands, and the reads of their state.

/// The stores with this capability.
macro_rules! seats_contract {
    ($($test:ident),* $(,)?) => {
        contract!([memory: Memory, postgres: Postgres, pooled: Pooled]; $($test),*);
    };
}

pub mod commands;
mod holds;
