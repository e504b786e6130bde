//! The key/value cache of one generation session: allocated once at its capacity, written
//! in place position by position, truncated to reuse a prefix.

use burn::tensor::{Device, Tensor};

/// Keys and values of one layer, `[1, kv_heads, capacity, head_dim]` each.
struct LayerCache {
    k: Option<Tensor<4>>,
    v: Option<Tensor<4>>,
}

/// The cache of all layers plus the token ids whose keys/values it holds.
pub struct KvCache {
    layers: Vec<LayerCache>,
    kv_heads: usize,
    head_dim: usize,
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
            kv_heads,
            head_dim,
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
    /// returns the keys/values of positions `0..start + s`.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        start: usize,
        k_new: Tensor<4>,
        v_new: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let s = k_new.dims()[2];
        let end = start + s;
        assert!(
            end <= self.capacity,
            "KV cache overflow: {end} > {}",
            self.capacity
        );
        let (h, d) = (self.kv_heads, self.head_dim);
        let cache = &mut self.layers[layer];
        let k = cache.k.take().expect("cache in use");
        let v = cache.v.take().expect("cache in use");
        let k = k.slice_assign([0..1, 0..h, start..end, 0..d], k_new);
        let v = v.slice_assign([0..1, 0..h, start..end, 0..d], v_new);
        let k_all = k.clone().slice([0..1, 0..h, 0..end, 0..d]);
        let v_all = v.clone().slice([0..1, 0..h, 0..end, 0..d]);
        cache.k = Some(k);
        cache.v = Some(v);
        (k_all, v_all)
    }
}
