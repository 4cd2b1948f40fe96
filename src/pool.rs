//! Recycled buffers for the live path. A [`Recycler`] hands out [`Pooled`] values (a network
//! input's host buffer, a network-size image, a disparity or depth map, a colourised image) that
//! go back to it when they are dropped, wherever that happens: in a keep-latest queue that
//! replaces a frame the next stage had no time for, in the outputs, or on the telemetry thread.
//! Once every buffer has been around the loop, the live path allocates none of its per-frame
//! buffers.

use crossbeam_channel::{Receiver, Sender};
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A pool of reusable values of one kind. Cloning it shares the pool.
pub struct Recycler<T> {
    give: Sender<T>,
    take: Receiver<T>,
    make: Arc<dyn Fn() -> T + Send + Sync>,
}

impl<T> Clone for Recycler<T> {
    fn clone(&self) -> Self {
        Self { give: self.give.clone(), take: self.take.clone(), make: Arc::clone(&self.make) }
    }
}

impl<T> Recycler<T> {
    /// A pool keeping up to `capacity` idle values; `make` builds one when none is idle (an
    /// empty buffer is fine: the stage that fills a value sizes it, and keeps its capacity).
    pub fn new(capacity: usize, make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        let (give, take) = crossbeam_channel::bounded(capacity.max(1));
        Self { give, take, make: Arc::new(make) }
    }

    /// An idle value, or a new one.
    pub fn get(&self) -> Pooled<T> {
        let value = self.take.try_recv().unwrap_or_else(|_| (self.make)());
        Pooled { value: ManuallyDrop::new(value), home: Some(self.give.clone()) }
    }

    /// How many values are idle in the pool now.
    pub fn idle(&self) -> usize {
        self.take.len()
    }
}

/// A value that returns to its [`Recycler`] when dropped (and is simply freed when the pool is
/// full, or when it has none: [`Pooled::detached`]).
pub struct Pooled<T> {
    value: ManuallyDrop<T>,
    home: Option<Sender<T>>,
}

impl<T> Pooled<T> {
    /// A value that belongs to no pool (freed when dropped).
    pub fn detached(value: T) -> Self {
        Self { value: ManuallyDrop::new(value), home: None }
    }
}

impl<T> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        // SAFETY: `value` is taken exactly once, here, and never touched again: `self` is being
        // dropped and ManuallyDrop keeps the compiler from dropping it a second time.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        if let Some(home) = &self.home {
            // A full pool (or one whose recycler is gone) lets the value go.
            let _ = home.try_send(value);
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_values_come_back_with_their_capacity() {
        let pool = Recycler::new(2, || Vec::<u8>::with_capacity(0));
        let mut a = pool.get();
        a.extend_from_slice(&[1, 2, 3]);
        let address = a.as_ptr();
        drop(a);
        assert_eq!(pool.idle(), 1);
        let b = pool.get();
        assert_eq!(b.as_ptr(), address, "the same allocation is handed out again");
        assert_eq!(*b, vec![1, 2, 3], "the value comes back as it was left");
        // Dropped on another thread (the telemetry's), it still comes home.
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn a_full_pool_and_a_detached_value_let_go() {
        let pool = Recycler::new(1, Vec::<u8>::new);
        let (a, b) = (pool.get(), pool.get());
        drop(a);
        drop(b);
        assert_eq!(pool.idle(), 1, "the pool keeps at most its capacity");
        drop(Pooled::detached(vec![0u8; 4]));
        assert_eq!(pool.idle(), 1);
        let orphan = pool.get();
        drop(pool);
        drop(orphan); // its pool is gone: freed, no panic
    }
}
