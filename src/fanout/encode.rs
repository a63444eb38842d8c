//! One encoding of an event per dialect and delivery pass, shared by every connection it
//! reaches.

use std::sync::Arc;

/// Encodings of one event, shared by every connection it is delivered to in one pass: a
/// profile encodes an event once per delivery, not once per recipient (a group of 256 would
/// otherwise build and serialize the same payload 256 times).
#[derive(Default)]
pub struct EncodeCache {
    slots: std::cell::RefCell<Vec<(std::any::TypeId, Option<Encoded>)>>,
}

/// One profile's encoding of an event, shared by all its connections.
type Encoded = Arc<dyn std::any::Any + Send + Sync>;

impl EncodeCache {
    /// The encoding keyed by `K` (usually the profile type), computed on first use.
    pub fn get_or_encode<K: 'static, T: Send + Sync + 'static>(
        &self,
        encode: impl FnOnce() -> Option<T>,
    ) -> Option<Arc<T>> {
        let key = std::any::TypeId::of::<K>();
        if let Some((_, cached)) = self.slots.borrow().iter().find(|(k, _)| *k == key) {
            return cached.clone().and_then(|any| any.downcast::<T>().ok());
        }
        let encoded = encode().map(Arc::new);
        let erased = encoded.clone().map(|e| e as Arc<dyn std::any::Any + Send + Sync>);
        self.slots.borrow_mut().push((key, erased));
        encoded
    }
}
