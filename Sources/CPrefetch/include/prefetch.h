#ifndef IDENTITY_GRAPH_PREFETCH_H
#define IDENTITY_GRAPH_PREFETCH_H

/// Asks the CPU to bring the cache line at `address` in, for a write soon, without waiting for it
/// and without faulting on a bad address. Swift has no way to say this; a load would wait.
static inline void identity_graph_prefetch(const void *address) {
    __builtin_prefetch(address, 1, 3);
}

#endif
