//! The key/value cache of one generation session: allocated once at its capacity, written
//! in place position by position, truncated to reuse a prefix.

use burn::tensor::{Device, Tensor};
use penwright_kernels::ops::cached_attention;

/// Keys and values of one layer, `[1, kv_heads, capacity, head_dim]` each.
struct LayerCache {
    k: Option<Tensor<4>>,
    v: Option<Tensor<4>>,
}

/// The cache of all layers plus the token ids whose keys/values it holds.
pub struct KvCache {
    layers: Vec<LayerCache>,
    capacity: usize,
    tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        device: &Device,
    ) -> Self {
        let layers = (0..num_layers)
            .map(|_| LayerCache {
                k: Some(Tensor::zeros([1, kv_heads, capacity, head_dim], device)),
                v: Some(Tensor::zeros([1, kv_heads, capacity, head_dim], device)),
            })
            .collect();
        KvCache {
            layers,
            capacity,
            tokens: Vec::new(),
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The token ids whose keys and values are cached, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position from `len` on (rollback); the memory stays allocated.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// Records that `ids` were appended (called once per forward pass, after every layer
    /// wrote its keys and values at positions `len..len + ids.len()`).
    pub(crate) fn commit(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
    }

    /// Writes the new keys/values `[1, kv_heads, s, head_dim]` of `layer` at `start` and
    /// returns the attention of `q` (`[1, heads, s, head_dim]`) over positions
    /// `0..start + s`, read from the cache where it is (see
    /// [`penwright_kernels::ops::cached_attention`]).
    pub(crate) fn attend(
        &mut self,
        layer: usize,
        start: usize,
        q: Tensor<4>,
        k_new: Tensor<4>,
        v_new: Tensor<4>,
    ) -> Tensor<4> {
        let end = start + k_new.dims()[2];
        assert!(
            end <= self.capacity,
            "KV cache overflow: {end} > {}",
            self.capacity
        );
        let cache = &mut self.layers[layer];
        let k = cache.k.take().expect("cache in use");
        let v = cache.v.take().expect("cache in use");
        let (out, k, v) = cached_attention(q, k_new, v_new, k, v, start);
        cache.k = Some(k);
        cache.v = Some(v);
        out
    }
}
