//! A bounded channel to a thread that writes in batches: what the audit log and the northbound queue
//! both need. `send` blocks when the channel is full (backpressure, never a silent drop); a failed
//! write is retried with backoff until it succeeds (disk full, locked database), so nothing queued is
//! lost; `flush` returns once everything sent before it is written.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

enum Cmd<T> {
    Item(T),
    Flush(SyncSender<()>),
}

pub struct BatchSender<T> {
    tx: SyncSender<Cmd<T>>,
}

impl<T> Clone for BatchSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static> BatchSender<T> {
    /// Starts the writer thread. `write` gets at most `max_batch` items at a time.
    pub fn spawn(
        name: &str,
        capacity: usize,
        max_batch: usize,
        write: impl FnMut(&[T]) -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(capacity);
        let label = name.to_owned();
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || writer_loop(&label, rx, max_batch.max(1), write))?;
        Ok((Self { tx }, h))
    }

    /// Queues one item; false only if the writer is gone.
    pub fn send(&self, item: T) -> bool {
        self.tx.send(Cmd::Item(item)).is_ok()
    }

    /// Queues one item without waiting; false when the channel is full or the writer is gone (for
    /// callers that must not block: the audit sink while the disk is failing).
    pub fn try_send(&self, item: T) -> bool {
        self.tx.try_send(Cmd::Item(item)).is_ok()
    }

    /// Returns once everything sent before this call is written.
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send(Cmd::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

fn writer_loop<T>(
    name: &str,
    rx: Receiver<Cmd<T>>,
    max_batch: usize,
    mut write: impl FnMut(&[T]) -> Result<(), String>,
) {
    let mut batch = Vec::with_capacity(max_batch.min(1024));
    let mut waiters = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Item(t) => batch.push(t),
                Cmd::Flush(w) => waiters.push(w),
            }
            if batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        let mut delay = Duration::from_millis(50);
        while !batch.is_empty() {
            match write(&batch) {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(writer = name, error = %e, items = batch.len(), "write failed; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn batches_retries_and_flushes() {
        let seen = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let fails = Arc::new(Mutex::new(2));
        let (s, f) = (seen.clone(), fails.clone());
        let (tx, h) = BatchSender::spawn("t", 4, 3, move |b: &[u32]| {
            let mut n = f.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                return Err("disk full".into());
            }
            s.lock().unwrap().push(b.to_vec());
            Ok(())
        })
        .unwrap();
        for i in 0..10 {
            assert!(tx.send(i));
        }
        tx.flush();
        let got: Vec<u32> = seen.lock().unwrap().iter().flatten().copied().collect();
        assert_eq!(
            got,
            (0..10).collect::<Vec<_>>(),
            "every item, in order, despite two failures"
        );
        assert!(seen.lock().unwrap().iter().all(|b| b.len() <= 3));
        drop(tx);
        h.join().unwrap();
    }
}
