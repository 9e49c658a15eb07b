/* Split virtqueue, driver side: see virtqueue.h (virtio 1.2 §2.7). */
#include "virtqueue.h"
#include "dmamem.h"

/* avail: le16 flags; le16 idx; le16 ring[size]; le16 used_event (§2.7.6) */
#define AVAIL_FLAGS	0
#define AVAIL_IDX	1
#define AVAIL_RING(i)	(2 + (i))
/* used: le16 flags; le16 idx; struct virtq_used_elem ring[size]; le16 avail_event (§2.7.8) */
#define USED_FLAGS	0
#define USED_IDX	1

static inline volatile struct virtq_used_elem *used_elem(const struct virtq *q, u16 i)
{
	return (volatile struct virtq_used_elem *)((uintptr_t)q->used + 4 + 8 * (uintptr_t)i);
}

bool vq_alloc(struct virtq *q, u16 max_size, u16 ind_max)
{
	memset(q, 0, sizeof(*q));
	q->max_size = max_size;
	q->ind_max = ind_max;
	/* §2.7 alignment: descriptor table 16, available ring 2, used ring 4; each part gets its
	 * own pages here. */
	u64 dsz = 16ull * max_size, asz = 6 + 2ull * max_size, usz = 6 + 8ull * max_size;
	q->desc = dma_alloc(dsz, 4096);
	q->avail = dma_alloc(asz, 4096);
	q->used = dma_alloc(usz, 4096);
	q->slots = dma_alloc(sizeof(struct vq_slot) * max_size, 64);
	if (ind_max)
		q->ind_pool = dma_alloc(16ull * ind_max * max_size, 4096);
	return q->desc && q->avail && q->used && q->slots && (!ind_max || q->ind_pool);
}

void vq_reset(struct virtq *q, u16 index, u16 size, bool event_idx, bool indirect)
{
	q->index = index;
	q->size = size;
	q->event_idx = event_idx;
	q->indirect = indirect && q->ind_max > 1;
	/* §4.1.5.1.3: allocate and zero the three parts; §2.7.10.1: used flags start at 0 */
	memset((void *)q->desc, 0, 16ull * size);
	memset((void *)q->avail, 0, 6 + 2ull * size);
	memset((void *)q->used, 0, 6 + 8ull * size);
	memset(q->slots, 0, sizeof(struct vq_slot) * size);
	for (u16 i = 0; i < size; i++)
		q->desc[i].next = (u16)(i + 1);	/* free list through next */
	q->free_head = 0;
	q->num_free = size;
	q->avail_idx = q->kicked_idx = q->last_used = 0;
	q->irq_on = true;	/* kicks and kicks_suppressed count across resets */
}

int vq_add(struct virtq *q, const struct vq_seg *segs, u16 n, void *token, bool use_indirect)
{
	if (!n)
		return -1;
	bool ind = use_indirect && q->indirect && n > 1;
	if (ind && n > q->ind_max)
		return -1;
	u16 need = ind ? 1 : n;
	if (q->num_free < need)
		return -1;
	u16 head = q->free_head, i = head;
	if (ind) {
		/* §2.7.5.3: one main descriptor with VIRTQ_DESC_F_INDIRECT (never with NEXT) that
		 * points at a table of n descriptors chained by next from index 0. */
		struct virtq_desc *t = q->ind_pool + (u64)head * q->ind_max;
		for (u16 k = 0; k < n; k++) {
			t[k].addr = segs[k].addr;
			t[k].len = segs[k].len;
			t[k].flags = (segs[k].write ? VIRTQ_DESC_F_WRITE : 0) |
				     (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
			t[k].next = k + 1 < n ? (u16)(k + 1) : 0;
		}
		q->desc[i].addr = (u64)(uintptr_t)t;
		q->desc[i].len = 16u * n;
		q->desc[i].flags = VIRTQ_DESC_F_INDIRECT;
		i = q->desc[i].next;	/* the free-list link stays in the last descriptor */
	} else {
		/* §2.7.13.1: the chain follows the free list; next already links it */
		for (u16 k = 0; k < n; k++) {
			q->desc[i].addr = segs[k].addr;
			q->desc[i].len = segs[k].len;
			q->desc[i].flags = (segs[k].write ? VIRTQ_DESC_F_WRITE : 0) |
					   (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
			i = q->desc[i].next;
		}
	}
	q->free_head = i;
	q->num_free -= need;
	q->slots[head].token = token;
	q->slots[head].ndesc = need;
	/* §2.7.13.2: the head goes into the next available ring entry (published by vq_kick) */
	q->avail[AVAIL_RING(q->avail_idx & (q->size - 1))] = head;
	q->avail_idx++;
	return head;
}

int vq_add_raw(struct virtq *q, const struct vq_raw *descs, u16 n, void *token)
{
	u16 idx[16];
	if (!n || n > 16 || q->num_free < n)
		return -1;
	u16 i = q->free_head;
	for (u16 k = 0; k < n; k++) {
		idx[k] = i;
		i = q->desc[i].next;
	}
	q->free_head = i;
	q->num_free -= n;
	for (u16 k = 0; k < n; k++) {
		q->desc[idx[k]].addr = descs[k].addr;
		q->desc[idx[k]].len = descs[k].len;
		q->desc[idx[k]].flags = descs[k].flags;
		u32 nx = descs[k].next;
		q->desc[idx[k]].next = nx & 0x10000u ? (u16)nx : nx < n ? idx[nx] : 0;
	}
	/* the chain's next fields may be anything: its descriptors are not returned to the free
	 * list (the tests reset the queue afterwards) */
	q->slots[idx[0]].token = token;
	q->slots[idx[0]].ndesc = 0;
	q->avail[AVAIL_RING(q->avail_idx & (q->size - 1))] = idx[0];
	q->avail_idx++;
	return idx[0];
}

/* Linux include/uapi/linux/virtio_ring.h vring_need_event(): notify if new_idx passed event_idx
 * since old. */
static inline bool need_event(u16 event_idx, u16 new_idx, u16 old)
{
	return (u16)(new_idx - event_idx - 1) < (u16)(new_idx - old);
}

void vq_kick(struct virtq *q, bool force)
{
	/* §2.7.13.3.1: descriptors and ring entries before idx */
	virtio_wmb();
	u16 old = q->kicked_idx, now = q->avail_idx;
	q->avail[AVAIL_IDX] = now;
	/* §2.7.13.4.1: idx must be visible before we read flags / avail_event */
	virtio_mb();
	bool notify;
	if (q->event_idx)	/* §2.7.10.1 */
		notify = need_event(vq_avail_event(q), now, old);
	else
		notify = !(q->used[USED_FLAGS] & VIRTQ_USED_F_NO_NOTIFY);
	q->kicked_idx = now;
	if (!notify && !force) {
		q->kicks_suppressed++;
		return;
	}
	q->kicks++;
	/* §4.1.5.2: write the 16-bit queue index to the queue's notify address */
	if (q->notify_io)
		outw((u16)q->notify_addr, q->notify_val);
	else
		mmio_write16(q->notify_addr, q->notify_val);
}

bool vq_pop(struct virtq *q, void **token, u32 *len)
{
	if (q->last_used == q->used[USED_IDX])
		return false;
	virtio_rmb();	/* read the entry only after seeing idx move */
	volatile struct virtq_used_elem *e = used_elem(q, q->last_used & (q->size - 1));
	u32 id = e->id, l = e->len;
	q->last_used++;
	/* §2.7.7.1: used_event says when the next notification is due. Only re-armed while
	 * interrupts are on, as Linux's virtqueue_get_buf does: writing last_used - 1 here would name
	 * the entry just consumed, and a device that checks used_event after this pop would rightly
	 * notify for it. */
	if (q->event_idx && q->irq_on)
		q->avail[AVAIL_RING(q->size)] = q->last_used;
	void *t = NULL;
	if (id < q->size) {
		t = q->slots[id].token;
		u16 nd = q->slots[id].ndesc;
		q->slots[id].token = NULL;
		q->slots[id].ndesc = 0;
		if (nd) {
			u16 last = (u16)id;
			for (u16 k = 1; k < nd; k++)
				last = q->desc[last].next;
			q->desc[last].next = q->free_head;
			q->free_head = (u16)id;
			q->num_free += nd;
		}
	}
	if (token)
		*token = t;
	if (len)
		*len = l;
	return true;
}

void vq_interrupts(struct virtq *q, bool on)
{
	q->irq_on = on;
	if (q->event_idx) {
		/* §2.7.7.1: flags MUST be 0; used_event = last_used asks for a notification when the
		 * next entry is written, last_used - 1 only after 65535 more */
		q->avail[AVAIL_FLAGS] = 0;
		q->avail[AVAIL_RING(q->size)] = on ? q->last_used : (u16)(q->last_used - 1);
	} else {
		q->avail[AVAIL_FLAGS] = on ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
	}
	virtio_mb();	/* §2.7.14: publish before re-checking the used ring */
}
