//! Progress display: bars and spinners on a terminal (indicatif), nothing otherwise.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes. `Progress::auto()` draws on stderr only when it is a terminal.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

/// One bar or spinner; a no-op when progress is hidden.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Draw on stderr when it is a terminal.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::visible()
        } else {
            Self::hidden()
        }
    }

    /// Always draw (on stderr).
    pub fn visible() -> Self {
        Progress {
            multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Never draw.
    pub fn hidden() -> Self {
        Progress { multi: None }
    }

    /// A byte counter for a transfer of `len` bytes (unknown: a spinner with a byte count).
    pub fn bytes(&self, msg: &str, len: Option<u64>) -> Bar {
        let Some(multi) = &self.multi else {
            return Bar { bar: None };
        };
        let bar = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg:30!} {bytes} {bytes_per_sec}")
                    .expect("valid template"),
            ),
        };
        let bar = multi.add(bar.with_message(msg.to_string()));
        Bar { bar: Some(bar) }
    }

    /// A spinner with a message, for steps of unknown length.
    pub fn spinner(&self, msg: &str) -> Bar {
        let Some(multi) = &self.multi else {
            return Bar { bar: None };
        };
        let bar = multi.add(
            ProgressBar::new_spinner()
                .with_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("valid template"),
                )
                .with_message(msg.to_string()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar { bar: Some(bar) }
    }

    /// A bar counting `len` steps.
    pub fn steps(&self, msg: &str, len: u64) -> Bar {
        let Some(multi) = &self.multi else {
            return Bar { bar: None };
        };
        let bar = multi.add(
            ProgressBar::new(len)
                .with_style(
                    ProgressStyle::with_template("{msg:30!} [{bar:30}] {pos}/{len} {elapsed}")
                        .expect("valid template")
                        .progress_chars("=> "),
                )
                .with_message(msg.to_string()),
        );
        Bar { bar: Some(bar) }
    }

    /// Print a line above the bars (or to stderr when hidden is not wanted: callers decide).
    pub fn println(&self, line: &str) {
        if let Some(multi) = &self.multi {
            let _ = multi.println(line);
        }
    }
}

impl Bar {
    /// Wrap a reader so that reading advances the bar.
    pub fn wrap_read<R: Read + 'static>(&self, r: R) -> Box<dyn Read + '_> {
        match &self.bar {
            Some(b) => Box::new(b.wrap_read(r)),
            None => Box::new(r),
        }
    }

    /// Advance by one step.
    pub fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Change the message.
    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }

    /// Finish and clear.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
