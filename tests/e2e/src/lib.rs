//! The production path's end-to-end suite lives in `tests/production/`: the Lambda handlers of
//! `functions/` with their real AWS adapters, on moto's server, invoked in-process with the
//! events AWS sends (moto runs no Lambda and fires no schedule). `tests/run.sh` starts the
//! server and runs it.
