//! The sink against a real PostgreSQL: `DATABASE_URL` must name one where the tests may create
//! databases (scripts/test starts a throwaway cluster and sets it). Each test makes its own
//! database, so they run in parallel, and drops it when it passes.

mod deltas;
mod lease;
mod outage;
mod restore;
mod support;
mod writer;
