/*
 * Split virtqueues, driver side (virtio 1.2 §2.7): descriptor table with a free list, available
 * and used rings, chains with VIRTQ_DESC_F_NEXT, indirect descriptor tables (§2.7.5.3, when
 * VIRTIO_F_INDIRECT_DESC is negotiated) and VIRTIO_F_EVENT_IDX notification suppression
 * (§2.7.7, §2.7.10). The probe polls the used ring; interrupts are never taken.
 *
 * Memory ordering (x86, TSO): stores become visible in program order and loads are not
 * reordered with older loads, so the write barriers of §2.7.13 and the read barrier before
 * reading used ring entries are compiler barriers; the store->load barrier of §2.7.13.4.1
 * (publish avail idx, then read avail_event / used flags) and §2.7.14 (publish used_event, then
 * re-read used idx) is mfence. Rings live in write-back RAM; the notify register is uncached MMIO.
 */
#ifndef PROBE_VIRTQUEUE_H
#define PROBE_VIRTQUEUE_H
#include "probe.h"

/* §2.7.5 */
#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4
/* §2.7.6, §2.7.8 */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	1

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct virtq_used_elem {
	u32 id;
	u32 len;
};

/* One buffer element of a request. */
struct vq_seg {
	u64 addr;
	u32 len;
	bool write;		/* device-writable */
};

struct vq_slot {
	void *token;
	u16 ndesc;		/* descriptors of the main table used by this chain */
};

struct virtq {
	u16 size, index;	/* queue size, queue number */
	u16 max_size;		/* what the memory was allocated for */
	u16 ind_max;		/* entries per indirect table */
	volatile struct virtq_desc *desc;
	volatile u16 *avail;	/* flags, idx, ring[size], used_event */
	volatile u16 *used;	/* flags, idx, then elems; avail_event after ring[size] */
	struct virtq_desc *ind_pool;	/* size * ind_max entries: table i belongs to head i */
	struct vq_slot *slots;
	u16 free_head, num_free;
	u16 avail_idx;		/* our copy of avail->idx */
	u16 kicked_idx;		/* avail idx at the last notification decision */
	u16 last_used;
	bool event_idx, indirect;
	bool irq_on;		/* used buffer notifications wanted (vq_interrupts) */
	/* notification (§4.1.5.2): write notify_val (16 bits) to notify_addr */
	u64 notify_addr;
	bool notify_io;
	u16 notify_val;
	/* statistics */
	u64 kicks, kicks_suppressed;
};

/* Allocate memory for a queue of up to max_size entries and ind_max-entry indirect tables. */
bool vq_alloc(struct virtq *q, u16 max_size, u16 ind_max);
/* Zero the rings, build the free list, clear the indices (before queue_enable or after a
 * device reset). */
void vq_reset(struct virtq *q, u16 index, u16 size, bool event_idx, bool indirect);
/* Ring addresses for queue_desc / queue_driver / queue_device. */
static inline u64 vq_desc_addr(const struct virtq *q) { return (u64)(uintptr_t)q->desc; }
static inline u64 vq_avail_addr(const struct virtq *q) { return (u64)(uintptr_t)q->avail; }
static inline u64 vq_used_addr(const struct virtq *q) { return (u64)(uintptr_t)q->used; }

/*
 * Add a chain of n elements (device-readable ones first, §2.7.13.1) without publishing it;
 * use_indirect puts a chain of more than one element into an indirect table. Returns the head
 * index, or -1 if there are not enough free descriptors (or n > ind_max for indirect).
 */
int vq_add(struct virtq *q, const struct vq_seg *segs, u16 n, void *token, bool use_indirect);
/*
 * Raw chain for malformed-request tests: n descriptors are taken from the free list and filled
 * from descs[] (addr, len, flags). next: VQ_NEXT_REL(i) links to the i-th descriptor of this
 * chain, VQ_NEXT_ABS(x) writes x as is; flags are written as given (NEXT is not added).
 */
#define VQ_NEXT_REL(i)	((u32)(i))
#define VQ_NEXT_ABS(x)	(0x10000u | (u32)(x))
struct vq_raw {
	u64 addr;
	u32 len;
	u16 flags;
	u32 next;
};
int vq_add_raw(struct virtq *q, const struct vq_raw *descs, u16 n, void *token);
/* Make everything added visible (§2.7.13.3) and notify the device unless it suppressed
 * notifications (§2.7.10, §2.7.13.4). force: notify regardless. */
void vq_kick(struct virtq *q, bool force);
/* Next used buffer, if any (§2.7.14); frees its descriptors. */
bool vq_pop(struct virtq *q, void **token, u32 *len);
/* Used buffer notifications (§2.7.7): on = the device should notify after the next used
 * buffer; off = suppress (flags = NO_INTERRUPT, or used_event far behind with EVENT_IDX). */
void vq_interrupts(struct virtq *q, bool on);
static inline u16 vq_used_idx(const struct virtq *q) { barrier(); return q->used[1]; }
/* avail_event (only meaningful with EVENT_IDX) and used flags, as the device wrote them */
static inline u16 vq_avail_event(const struct virtq *q) { return q->used[2 + 4 * q->size]; }
static inline u16 vq_used_flags(const struct virtq *q) { return q->used[0]; }

static inline void virtio_mb(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline void virtio_wmb(void) { barrier(); }
static inline void virtio_rmb(void) { barrier(); }

#endif
