//! The progress line of `shopsync sync` and `shopsync import`: the engine reports progress as `shopsync::progress`
//! events (phase, done, total); this layer draws them on one stderr line.

use std::io::Write;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Draws progress events on one line of stderr (redrawn in place on a terminal, a line per
/// update otherwise).
#[derive(Default)]
pub struct ProgressLine;

#[derive(Default)]
struct Fields {
    phase: String,
    unit: String,
    done: u64,
    total: u64,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "done" => self.done = value,
            "total" => self.total = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "phase" => self.phase = value.to_owned(),
            "unit" => self.unit = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ProgressLine {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.unit.is_empty() {
            fields.unit = "products".into();
        }
        let line = if fields.total > 0 {
            let share = fields.done as f64 * 100.0 / fields.total as f64;
            format!(
                "{}: {} of {} {} ({share:.0}%)",
                fields.phase, fields.done, fields.total, fields.unit
            )
        } else {
            format!("{}: {} {}", fields.phase, fields.done, fields.unit)
        };
        let mut err = std::io::stderr().lock();
        let _ = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}
