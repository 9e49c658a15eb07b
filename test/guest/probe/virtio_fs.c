/*
 * virtio-fs driver and FUSE client (virtio 1.2 §5.11, Linux include/uapi/linux/fuse.h), from the
 * driver's side, so that QEMU's vhost-user-fs-pci + virtiofsd and kvmkit's VirtioFs can be held
 * to the same answers. One FUSE request at a time on the first request queue (queue 1), except
 * the concurrent-reads case (18 in flight); FORGET and BATCH_FORGET go on the hiprio queue
 * (queue 0), as Linux sends them.
 *
 *   probe.test=fs       INIT, then every operation a file system needs on the share the test
 *                       prepared (README.md, "virtio-fs": the layout and every PROBE line),
 *                       error codes, and confinement (host symlinks pointing out of the share)
 *   probe.test=fsbench  LOOKUP+GETATTR rate, create+write+release of small files, sequential
 *                       write and read of one large file
 *   probe.test=fsvisible  rounds of LOOKUPs of given paths, a root listing and a held handle:
 *                       what a (changing) allowlist lets the guest see (kvmkit)
 *
 * Options: probe.fs.dev=N (which virtio-fs device, default 0), probe.fs.indirect=0|1,
 * probe.fs.eventidx=0|1 (default 1), probe.fs.qsize=N (default min(128, max)), probe.fs.minor=N
 * (FUSE minor version sent in INIT, default 37 as Linux 6.1), probe.fs.timeout_ms=N (per
 * request, default 5000), probe.fs.flags=N (INIT flags), probe.fs.destroy=0|1 (send FUSE_DESTROY
 * at the end, default 1), probe.fs.bad=all|<case>,... (fs: malformed requests afterwards, default
 * none), probe.fs.bad_timeout_ms=N (default 500);
 * fsbench: probe.fs.bench=lookup,create,seqwrite,rewrite,seqread, probe.fs.lookups=N (default 10000),
 * probe.fs.files=N (default 1000), probe.fs.filesize=N (default 4096), probe.fs.size=MiB
 * (default 256), probe.fs.bs=N (bytes per READ/WRITE, default 1 MiB, capped by max_write and
 * max_pages), probe.fs.tsc_khz=N.
 */
#include "tests.h"
#include "cmdline.h"
#include "dmamem.h"
#include "virtio_pci.h"
#include "virtqueue.h"
#include "virtio_fs.h"

/* results besides 0 and -errno */
#define FS_E_TIMEOUT	(-100000)
#define FS_E_BADREPLY	(-100001)
#define FS_E_QFULL	(-100002)
#define FS_E_NEEDSRESET	(-100003)

#define REQ_BYTES	(64u * 1024)	/* in header + arguments + names */
#define REP_BYTES	(64u * 1024)	/* reply arguments when the caller gives no buffer */
#define NODE_MAX	256		/* nodeids with lookup counts (to forget at the end) */
#define IND_MAX		8
#define NAMES_MAX	32
#define NAME_LEN	64

struct node {
	u64 nodeid, nlookup;
};

static struct fs {
	struct virtio_dev d;
	struct virtq hq, rq;
	u16 qsize;
	char tag[VIRTIO_FS_TAG_BYTES + 1];
	u32 tag_len, nrq;
	u64 unique;
	u8 *req;			/* in header + arguments being built */
	u32 req_len;
	bool req_overflow;
	struct fuse_out_header *oh;
	u8 *rep;			/* default reply buffer */
	u8 *big;			/* data buffer (1 MiB + 4 KiB) */
	u32 big_bytes;
	u32 minor, max_write, max_pages, flags, flags2;
	u64 timeout_us;
	u64 requests, timeouts, bad_replies, used_len_mismatch, forgets;
	const char *bad_why;
	struct node *nodes;
	u32 nnodes;
	u64 root_ino;
	u64 attr_valid;		/* of the last attribute reply */
	u32 attr_valid_nsec;
} F;

/* ---- reporting ---- */

static const struct { int n; const char *s; } errnames[] = {
	{ 1, "EPERM" }, { 2, "ENOENT" }, { 5, "EIO" }, { 6, "ENXIO" }, { 9, "EBADF" }, { 11, "EAGAIN" },
	{ 12, "ENOMEM" }, { 13, "EACCES" }, { 14, "EFAULT" }, { 16, "EBUSY" }, { 17, "EEXIST" },
	{ 18, "EXDEV" }, { 20, "ENOTDIR" }, { 21, "EISDIR" }, { 22, "EINVAL" }, { 27, "EFBIG" },
	{ 28, "ENOSPC" }, { 29, "ESPIPE" }, { 30, "EROFS" }, { 31, "EMLINK" }, { 34, "ERANGE" },
	{ 36, "ENAMETOOLONG" }, { 38, "ENOSYS" }, { 39, "ENOTEMPTY" }, { 40, "ELOOP" }, { 61, "ENODATA" },
	{ 75, "EOVERFLOW" }, { 95, "EOPNOTSUPP" }, { 116, "ESTALE" },
};

/* "0", an errno name, "E<n>" for others, or the transport failure */
static const char *err_str(int r, char *tmp, size_t n)
{
	if (r == 0)
		return "0";
	if (r == FS_E_TIMEOUT)
		return "timeout";
	if (r == FS_E_BADREPLY)
		return "bad-reply";
	if (r == FS_E_QFULL)
		return "queue-full";
	if (r == FS_E_NEEDSRESET)
		return "needs-reset";
	for (u32 i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (errnames[i].n == -r)
			return errnames[i].s;
	snprintf(tmp, n, "E%d", -r);
	return tmp;
}

static int errno_of(int r) { return r <= 0 && r > -4096 ? -r : -1; }

static void fmt_octal(char *b, size_t n, u32 v)
{
	char t[16];
	int k = 0;
	do {
		t[k++] = (char)('0' + (v & 7));
		v >>= 3;
	} while (v && k < 15);
	size_t o = 0;
	if (o + 1 < n)
		b[o++] = '0';
	while (k && o + 1 < n)
		b[o++] = t[--k];
	b[o] = 0;
}

/* PROBE fs case=<c> op=<op> err=<name> errno=<n> <extra...> */
static void result(const char *cs, const char *op, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void result(const char *cs, const char *op, int r, const char *fmt, ...)
{
	char extra[768], tmp[16];
	extra[0] = 0;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(extra, sizeof(extra), fmt, ap);
		va_end(ap);
	}
	probe("fs case=%s op=%s err=%s errno=%d%s%s", cs, op, err_str(r, tmp, sizeof(tmp)), errno_of(r),
	      extra[0] ? " " : "", extra);
}

static int attr_str(char *b, size_t n, const struct fuse_attr *a)
{
	char mode[16];
	fmt_octal(mode, sizeof(mode), a->mode);
	return snprintf(b, n, "ino=%llu mode=%s size=%llu nlink=%u blocks=%llu uid=%u gid=%u", (unsigned long long)a->ino,
			mode, (unsigned long long)a->size, a->nlink, (unsigned long long)a->blocks, a->uid, a->gid);
}

/* ---- lookup counts (FUSE: every entry reply with a nodeid is one lookup to forget) ---- */

static void track(u64 nodeid)
{
	if (!nodeid || nodeid == FUSE_ROOT_ID || !F.nodes)
		return;
	for (u32 i = 0; i < F.nnodes; i++)
		if (F.nodes[i].nodeid == nodeid) {
			F.nodes[i].nlookup++;
			return;
		}
	if (F.nnodes < NODE_MAX)
		F.nodes[F.nnodes++] = (struct node){ nodeid, 1 };
}

static u64 untrack(u64 nodeid)
{
	for (u32 i = 0; i < F.nnodes; i++)
		if (F.nodes[i].nodeid == nodeid) {
			u64 n = F.nodes[i].nlookup;
			F.nodes[i] = F.nodes[--F.nnodes];
			return n;
		}
	return 0;
}

/* ---- requests ---- */

static u32 cur_op;
static u64 cur_node;

static void req_begin(u32 op, u64 nodeid)
{
	cur_op = op;
	cur_node = nodeid;
	F.req_len = sizeof(struct fuse_in_header);
	F.req_overflow = false;
}

static void req_put(const void *p, u32 n)
{
	if (F.req_len + n > REQ_BYTES) {
		F.req_overflow = true;
		return;
	}
	memcpy(F.req + F.req_len, p, n);
	F.req_len += n;
}

static void req_str(const char *s) { req_put(s, (u32)strlen(s) + 1); }

static bool fs_needs_reset(void) { return virtio_status(&F.d) & VIRTIO_STATUS_NEEDS_RESET; }

/*
 * Send the request built with req_begin/req_put on queue q: [in header + args](R) [data](R)
 * [out header](W) [out](W) (virtio 1.2 §5.11.6: device-readable part, then device-writable part).
 * noreply: FORGET-style, the device returns the buffer without writing. Returns 0, the server's
 * -errno, or FS_E_*; *out_len gets the reply's argument bytes (out header len - 16).
 */
static int req_send_q(struct virtq *q, const void *data, u32 data_len, void *out, u32 out_max, u32 *out_len, bool noreply)
{
	if (F.req_overflow)
		return FS_E_QFULL;
	u64 unique = ++F.unique;
	struct fuse_in_header *ih = (struct fuse_in_header *)F.req;
	*ih = (struct fuse_in_header){ .len = F.req_len + data_len, .opcode = cur_op, .unique = unique,
				       .nodeid = cur_node, .uid = 0, .gid = 0, .pid = 1 };
	/* poison the reply header so that a stale or missing write shows */
	F.oh->len = 0xffffffffu;
	F.oh->error = 1;
	F.oh->unique = 0;
	struct vq_seg s[4];
	u16 n = 0;
	s[n++] = (struct vq_seg){ (u64)(uintptr_t)F.req, F.req_len, false };
	if (data_len)
		s[n++] = (struct vq_seg){ (u64)(uintptr_t)data, data_len, false };
	if (!noreply) {
		s[n++] = (struct vq_seg){ (u64)(uintptr_t)F.oh, sizeof(struct fuse_out_header), true };
		if (out_max)
			s[n++] = (struct vq_seg){ (u64)(uintptr_t)out, out_max, true };
	}
	void *token = (void *)(uintptr_t)unique;
	if (vq_add(q, s, n, token, true) < 0)
		return FS_E_QFULL;
	F.requests++;
	vq_kick(q, false);
	u64 deadline = tsc_deadline_us(F.timeout_us), next_status = tsc_deadline_us(1000);
	u32 used = 0;
	for (;;) {
		void *t;
		u32 len;
		bool done = false;
		while (vq_pop(q, &t, &len)) {
			if (t == token) {
				used = len;
				done = true;
				break;
			}
		}
		if (done)
			break;
		if (!tsc_before(next_status)) {
			if (fs_needs_reset())
				return FS_E_NEEDSRESET;
			next_status = tsc_deadline_us(1000);
		}
		if (!tsc_before(deadline)) {
			F.timeouts++;
			return FS_E_TIMEOUT;
		}
		cpu_relax();
	}
	barrier();
	if (noreply) {
		if (out_len)
			*out_len = used;
		return 0;
	}
	const struct fuse_out_header *oh = F.oh;
	u32 olen = oh->len;
	int err = oh->error;
	const char *why = NULL;
	if (oh->unique != unique)
		why = "unique";
	else if (olen < sizeof(*oh) || olen > sizeof(*oh) + out_max)
		why = "len";
	else if (err > 0 || err <= -4096)
		why = "error-range";
	else if (err && olen != sizeof(*oh))
		why = "error-with-data";
	if (why) {
		F.bad_replies++;
		F.bad_why = why;
		return FS_E_BADREPLY;
	}
	if (used != olen)
		F.used_len_mismatch++;	/* §2.7.8: used len = bytes written; not relied upon */
	if (out_len)
		*out_len = olen - (u32)sizeof(*oh);
	return err;
}

static int req_send(const void *data, u32 data_len, void *out, u32 out_max, u32 *out_len)
{
	return req_send_q(&F.rq, data, data_len, out, out_max, out_len, false);
}

/* Entry replies (LOOKUP, CREATE, MKDIR, SYMLINK, LINK): a nodeid of 0 is a negative entry,
 * which means ENOENT (fuse.h: "nodeid 0 ... negative lookup"). */
static int entry_reply(int r, u32 ol, struct fuse_entry_out *e)
{
	if (r)
		return r;
	if (ol < sizeof(*e)) {
		F.bad_replies++;
		F.bad_why = "short-entry";
		return FS_E_BADREPLY;
	}
	memcpy(e, F.rep, sizeof(*e));
	if (!e->nodeid)
		return -2;
	track(e->nodeid);
	return 0;
}

/* ---- one function per operation ---- */

/* Send the request built so far and read an entry reply into e */
static int entry_send(struct fuse_entry_out *e)
{
	u32 ol = 0;
	memset(e, 0, sizeof(*e));
	int r = req_send(NULL, 0, F.rep, sizeof(*e), &ol);
	return entry_reply(r, ol, e);
}

static int fs_lookup(u64 parent, const char *name, struct fuse_entry_out *e)
{
	req_begin(FUSE_LOOKUP, parent);
	req_str(name);
	return entry_send(e);
}

/* LOOKUP without a report, as the kernel does before UNLINK/RMDIR/RENAME (a negative answer
 * is fine) */
static void prelookup(u64 parent, const char *name)
{
	struct fuse_entry_out e;
	fs_lookup(parent, name, &e);
}

/* Send the request built so far; a successful reply must carry at least size bytes, copied to
 * dst (zeroed first). */
static int req_reply(void *dst, u32 size)
{
	u32 ol = 0;
	memset(dst, 0, size);
	int r = req_send(NULL, 0, F.rep, size, &ol);
	if (!r && ol >= size)
		memcpy(dst, F.rep, size);
	else if (!r) {
		F.bad_replies++;
		F.bad_why = "short-reply";
		r = FS_E_BADREPLY;
	}
	return r;
}

/* GETATTR (in != NULL: SETATTR) */
static int fs_attr(u64 nodeid, const struct fuse_setattr_in *in, struct fuse_attr *a)
{
	struct fuse_getattr_in gin = { 0 };
	struct fuse_attr_out out;
	req_begin(in ? FUSE_SETATTR : FUSE_GETATTR, nodeid);
	if (in)
		req_put(in, sizeof(*in));
	else
		req_put(&gin, sizeof(gin));
	int r = req_reply(&out, sizeof(out));
	*a = out.attr;
	F.attr_valid = out.attr_valid;
	F.attr_valid_nsec = out.attr_valid_nsec;
	return r;
}

static int fs_getattr(u64 nodeid, struct fuse_attr *a) { return fs_attr(nodeid, NULL, a); }
static int fs_setattr(u64 nodeid, const struct fuse_setattr_in *in, struct fuse_attr *a) { return fs_attr(nodeid, in, a); }

static int fs_open(u32 op, u64 nodeid, u32 flags, struct fuse_open_out *o)
{
	struct fuse_open_in in = { .flags = flags };
	req_begin(op, nodeid);
	req_put(&in, sizeof(in));
	return req_reply(o, sizeof(*o));
}

static int fs_create(u64 parent, const char *name, u32 flags, u32 mode, struct fuse_entry_out *e, struct fuse_open_out *o)
{
	struct fuse_create_in in = { .flags = flags, .mode = mode, .umask = 0 };
	req_begin(FUSE_CREATE, parent);
	req_put(&in, sizeof(in));
	req_str(name);
	u32 ol = 0;
	memset(e, 0, sizeof(*e));
	memset(o, 0, sizeof(*o));
	int r = req_send(NULL, 0, F.rep, sizeof(*e) + sizeof(*o), &ol);
	if (!r && ol >= sizeof(*e) + sizeof(*o))
		memcpy(o, F.rep + sizeof(*e), sizeof(*o));
	else if (!r)
		ol = 0;	/* entry_reply reports it */
	return entry_reply(r, ol, e);
}

static int fs_release(u32 op, u64 nodeid, u64 fh, u32 flags)
{
	struct fuse_release_in in = { .fh = fh, .flags = flags };
	req_begin(op, nodeid);
	req_put(&in, sizeof(in));
	return req_send(NULL, 0, NULL, 0, NULL);
}

/* READ into buf: returns 0/-errno, *got = bytes */
static int fs_read(u64 nodeid, u64 fh, u64 off, u32 size, void *buf, u32 *got)
{
	struct fuse_read_in in = { .fh = fh, .offset = off, .size = size };
	req_begin(FUSE_READ, nodeid);
	req_put(&in, sizeof(in));
	*got = 0;
	return req_send(NULL, 0, buf, size, got);
}

static int fs_write(u64 nodeid, u64 fh, u64 off, const void *data, u32 size, u32 *written)
{
	struct fuse_write_in in = { .fh = fh, .offset = off, .size = size };
	req_begin(FUSE_WRITE, nodeid);
	req_put(&in, sizeof(in));
	u32 ol = 0;
	*written = 0;
	int r = req_send(data, size, F.rep, sizeof(struct fuse_write_out), &ol);
	if (!r && ol >= sizeof(struct fuse_write_out))
		*written = ((struct fuse_write_out *)F.rep)->size;
	else if (!r) {
		F.bad_replies++;
		F.bad_why = "short-reply";
		r = FS_E_BADREPLY;
	}
	return r;
}

static int fs_name_op(u32 op, u64 parent, const char *name)
{
	req_begin(op, parent);
	req_str(name);
	return req_send(NULL, 0, NULL, 0, NULL);
}

static int fs_mkdir(u64 parent, const char *name, u32 mode, struct fuse_entry_out *e)
{
	struct fuse_mkdir_in in = { .mode = mode, .umask = 0 };
	req_begin(FUSE_MKDIR, parent);
	req_put(&in, sizeof(in));
	req_str(name);
	return entry_send(e);
}

static int fs_mknod(u64 parent, const char *name, u32 mode, struct fuse_entry_out *e)
{
	struct fuse_mknod_in in = { .mode = mode, .rdev = 0, .umask = 0 };
	req_begin(FUSE_MKNOD, parent);
	req_put(&in, sizeof(in));
	req_str(name);
	return entry_send(e);
}

/* SYMLINK parent/name -> target */
static int fs_symlink(u64 parent, const char *name, const char *target, struct fuse_entry_out *e)
{
	req_begin(FUSE_SYMLINK, parent);
	req_str(name);
	req_str(target);
	return entry_send(e);
}

/* LINK: a new name parent/name for nodeid */
static int fs_link(u64 nodeid, u64 parent, const char *name, struct fuse_entry_out *e)
{
	struct fuse_link_in li = { .oldnodeid = nodeid };
	req_begin(FUSE_LINK, parent);
	req_put(&li, sizeof(li));
	req_str(name);
	return entry_send(e);
}

static int fs_rename(u64 olddir, const char *oldname, u64 newdir, const char *newname, int flags)
{
	if (flags < 0) {	/* plain RENAME */
		struct fuse_rename_in in = { .newdir = newdir };
		req_begin(FUSE_RENAME, olddir);
		req_put(&in, sizeof(in));
	} else {
		struct fuse_rename2_in in = { .newdir = newdir, .flags = (u32)flags };
		req_begin(FUSE_RENAME2, olddir);
		req_put(&in, sizeof(in));
	}
	req_str(oldname);
	req_str(newname);
	return req_send(NULL, 0, NULL, 0, NULL);
}

static int fs_readlink(u64 nodeid, char *buf, u32 size, u32 *len)
{
	req_begin(FUSE_READLINK, nodeid);
	*len = 0;
	int r = req_send(NULL, 0, F.rep, size, len);
	if (!r)
		memcpy(buf, F.rep, *len < size ? *len : size);
	return r;
}

static int fs_u64_op(u32 op, u64 nodeid, const void *in, u32 in_len)
{
	req_begin(op, nodeid);
	req_put(in, in_len);
	return req_send(NULL, 0, NULL, 0, NULL);
}

static int fs_setxattr(u64 nodeid, const char *name, const char *value, u32 flags)
{
	struct fuse_setxattr_in in = { .size = (u32)strlen(value), .flags = flags };
	req_begin(FUSE_SETXATTR, nodeid);
	/* 16 bytes only with FUSE_SETXATTR_EXT negotiated (fuse.h 7.33) */
	req_put(&in, F.flags & FUSE_SETXATTR_EXT ? sizeof(in) : FUSE_COMPAT_SETXATTR_IN_SIZE);
	req_str(name);
	req_put(value, in.size);
	return req_send(NULL, 0, NULL, 0, NULL);
}

/* GETXATTR/LISTXATTR: size 0 asks for the size (fuse_getxattr_out), else the value/list */
static int fs_getxattr(u32 op, u64 nodeid, const char *name, u32 size, u32 *len)
{
	struct fuse_getxattr_in in = { .size = size };
	req_begin(op, nodeid);
	req_put(&in, sizeof(in));
	if (name)
		req_str(name);
	u32 ol = 0;
	int r = req_send(NULL, 0, F.rep, size ? size : sizeof(struct fuse_getxattr_out), &ol);
	if (!r && !size)
		*len = ol >= sizeof(struct fuse_getxattr_out) ? ((struct fuse_getxattr_out *)F.rep)->size : 0;
	else
		*len = ol;
	return r;
}

static int fs_statfs(struct fuse_kstatfs *st)
{
	req_begin(FUSE_STATFS, FUSE_ROOT_ID);
	return req_reply(st, sizeof(*st));
}

static int fs_lseek(u64 nodeid, u64 fh, u64 off, u32 whence, u64 *res)
{
	struct fuse_lseek_in in = { .fh = fh, .offset = off, .whence = whence };
	req_begin(FUSE_LSEEK, nodeid);
	req_put(&in, sizeof(in));
	struct fuse_lseek_out out;
	int r = req_reply(&out, sizeof(out));
	*res = out.offset;
	return r;
}

/* FORGET (no reply) on the hiprio queue; returns 0 when the device used the buffer */
static int fs_forget(u64 nodeid, u64 nlookup, u32 *used)
{
	struct fuse_forget_in in = { .nlookup = nlookup };
	req_begin(FUSE_FORGET, nodeid);
	req_put(&in, sizeof(in));
	F.forgets++;
	return req_send_q(&F.hq, NULL, 0, NULL, 0, used, true);
}

/* BATCH_FORGET of every tracked node (at most 128 per request) */
static int fs_batch_forget_all(u32 *count, u32 *used)
{
	*count = 0;
	int r = 0;
	while (F.nnodes && !r) {
		u32 n = F.nnodes < 128 ? F.nnodes : 128;
		struct fuse_batch_forget_in in = { .count = n };
		req_begin(FUSE_BATCH_FORGET, 0);
		req_put(&in, sizeof(in));
		for (u32 i = 0; i < n; i++) {
			struct node *nd = &F.nodes[F.nnodes - 1 - i];
			struct fuse_forget_one one = { nd->nodeid, nd->nlookup };
			req_put(&one, sizeof(one));
		}
		F.nnodes -= n;
		*count += n;
		F.forgets++;
		r = req_send_q(&F.hq, NULL, 0, NULL, 0, used, true);
	}
	return r;
}

/* ---- device set-up and INIT ---- */

static bool fs_alloc(void)
{
	if (F.req)
		return true;
	F.req = dma_alloc(REQ_BYTES, 4096);
	F.oh = dma_alloc(64, 64);
	F.rep = dma_alloc(REP_BYTES, 4096);
	F.big_bytes = (1u << 20) + 4096;
	F.big = dma_alloc(F.big_bytes, 4096);
	F.nodes = dma_alloc(sizeof(struct node) * NODE_MAX, 64);
	return F.req && F.oh && F.rep && F.big && F.nodes;
}

static bool fs_queues(void)
{
	u64 wanted = 0;
	if (cmdline_u64("probe.fs.indirect", 1))
		wanted |= BIT64(VIRTIO_F_INDIRECT_DESC);
	if (cmdline_u64("probe.fs.eventidx", 1))
		wanted |= BIT64(VIRTIO_F_EVENT_IDX);
	if (!virtio_negotiate(&F.d, wanted))	/* VIRTIO_FS_F_NOTIFICATION is not accepted */
		return false;
	u16 hmax = virtio_queue_max(&F.d, VIRTIO_FS_HIPRIO_QUEUE), rmax = virtio_queue_max(&F.d, VIRTIO_FS_REQUEST_QUEUE);
	if (!hmax || !rmax) {
		virtio_fail(&F.d, "queue-missing");
		return false;
	}
	if (!F.rq.desc) {
		u16 want = (u16)cmdline_u64("probe.fs.qsize", 128), sz = 1;
		u16 lim = hmax < rmax ? hmax : rmax;
		while ((u32)sz * 2 <= want && (u32)sz * 2 <= lim)
			sz *= 2;
		F.qsize = sz;
		if (!vq_alloc(&F.hq, sz, IND_MAX) || !vq_alloc(&F.rq, sz, IND_MAX)) {
			virtio_fail(&F.d, "out-of-memory");
			return false;
		}
	}
	bool ev = F.d.negotiated & BIT64(VIRTIO_F_EVENT_IDX), ind = F.d.negotiated & BIT64(VIRTIO_F_INDIRECT_DESC);
	vq_reset(&F.hq, VIRTIO_FS_HIPRIO_QUEUE, F.qsize, ev, ind);
	vq_reset(&F.rq, VIRTIO_FS_REQUEST_QUEUE, F.qsize, ev, ind);
	if (!virtio_queue_enable(&F.d, VIRTIO_FS_HIPRIO_QUEUE, &F.hq) || !virtio_queue_enable(&F.d, VIRTIO_FS_REQUEST_QUEUE, &F.rq)) {
		virtio_fail(&F.d, F.d.err);
		return false;
	}
	virtio_driver_ok(&F.d);
	vq_interrupts(&F.hq, false);	/* we poll */
	vq_interrupts(&F.rq, false);
	return true;
}

static void fs_read_config(void)
{
	u8 gen;
	do {
		gen = virtio_generation(&F.d);
		for (u32 i = 0; i < VIRTIO_FS_TAG_BYTES; i++)
			F.tag[i] = (char)vdevcfg_read8(&F.d, VIRTIO_FS_CFG_TAG + i);
		F.nrq = vdevcfg_read32(&F.d, VIRTIO_FS_CFG_NUM_REQUEST_QUEUES);
	} while (gen != virtio_generation(&F.d));
	F.tag[VIRTIO_FS_TAG_BYTES] = 0;
	F.tag_len = (u32)strnlen(F.tag, VIRTIO_FS_TAG_BYTES);
}

/* FUSE_INIT (fuse.h: the first request; the server answers with its major/minor) */
static int fs_init(bool report)
{
	u32 minor = (u32)cmdline_u64("probe.fs.minor", FUSE_LINUX61_MINOR);
	u32 flags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC | FUSE_EXPORT_SUPPORT | FUSE_BIG_WRITES |
		    FUSE_DONT_MASK | FUSE_FLOCK_LOCKS | FUSE_HAS_IOCTL_DIR | FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS |
		    FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_HANDLE_KILLPRIV | FUSE_ABORT_ERROR |
		    FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS | FUSE_EXPLICIT_INVAL_DATA | FUSE_HANDLE_KILLPRIV_V2 |
		    FUSE_SETXATTR_EXT | FUSE_INIT_EXT;
	flags = (u32)cmdline_u64("probe.fs.flags", flags);
	struct fuse_init_in in = { .major = FUSE_KERNEL_VERSION, .minor = minor, .max_readahead = 128 * 1024,
				   .flags = flags, .flags2 = 0 };
	req_begin(FUSE_INIT, 0);
	/* before 7.36 the structure ends after flags */
	req_put(&in, minor >= 36 ? sizeof(in) : FUSE_COMPAT_INIT_IN_SIZE);
	u32 ol = 0;
	memset(F.rep, 0, sizeof(struct fuse_init_out));
	int r = req_send(NULL, 0, F.rep, sizeof(struct fuse_init_out), &ol);
	struct fuse_init_out o;
	memcpy(&o, F.rep, sizeof(o));
	if (!r && ol < 24) {	/* FUSE_COMPAT_22_INIT_OUT_SIZE: up to max_write */
		F.bad_replies++;
		F.bad_why = "short-init";
		r = FS_E_BADREPLY;
	}
	F.minor = o.minor;
	F.flags = r ? 0 : o.flags & flags;
	F.flags2 = r ? 0 : o.flags2;
	F.max_write = o.max_write;
	F.max_pages = F.flags & FUSE_MAX_PAGES ? o.max_pages : 32;	/* Linux: FUSE_DEFAULT_MAX_PAGES_PER_REQ */
	if (report) {
		char tmp[16];
		probe("fs-init err=%s errno=%d sent_minor=%u major=%u minor=%u reply_len=%u max_readahead=%u flags=0x%x flags2=0x%x"
		      " max_background=%u congestion_threshold=%u max_write=%u time_gran=%u max_pages=%u map_alignment=%u"
		      " max_pages_flag=%u setxattr_ext=%u readdirplus=%u",
		      err_str(r, tmp, sizeof(tmp)), errno_of(r), minor, o.major, o.minor, ol, o.max_readahead, o.flags,
		      o.flags2, o.max_background, o.congestion_threshold, o.max_write, o.time_gran, o.max_pages,
		      o.map_alignment, F.flags & FUSE_MAX_PAGES ? 1 : 0, F.flags & FUSE_SETXATTR_EXT ? 1 : 0,
		      F.flags & FUSE_DO_READDIRPLUS ? 1 : 0);
	}
	return r;
}

/* Find the device, set it up, negotiate, INIT. label: the test name for the error lines. */
static bool fs_start(const char *label)
{
	struct virtio_dev found[VIRTIO_MAX_DEVS];
	u32 n = virtio_pci_find(VIRTIO_ID_FS, found, VIRTIO_MAX_DEVS);
	u64 idx = cmdline_u64("probe.fs.dev", 0);
	probe("virtio-fs-count=%u cfg=%s ecam=0x%llx", n, virtio_pci_ecam() ? "ecam" : "cf8", (unsigned long long)virtio_pci_ecam());
	if (idx >= n) {
		probe("%s error=no-device dev=%llu count=%u", label, (unsigned long long)idx, n);
		return false;
	}
	memset(&F.d, 0, sizeof(F.d));
	F.d = found[idx];
	F.timeout_us = cmdline_u64("probe.fs.timeout_ms", 5000) * 1000;
	if (!fs_alloc()) {
		probe("%s error=out-of-memory", label);
		return false;
	}
	if (!virtio_pci_setup(&F.d)) {
		probe("%s error=%s", label, F.d.err);
		return false;
	}
	char l[16];
	snprintf(l, sizeof(l), "index=%llu", (unsigned long long)idx);
	virtio_pci_report(&F.d, "virtio-fs-pci", l);
	bool ok = fs_queues();
	fs_read_config();
	char line[400];
	int k = snprintf(line, sizeof(line), "PROBE virtio-fs index=%llu init=%s offered=0x%llx negotiated=0x%llx queue_size=%u"
			 " hiprio_max=%u request_max=%u num_queues=%u num_request_queues=%u status=0x%x tag_len=%u tag=",
			 (unsigned long long)idx, ok ? "ok" : F.d.err ? F.d.err : "failed", (unsigned long long)F.d.offered,
			 (unsigned long long)F.d.negotiated, F.qsize, virtio_queue_max(&F.d, 0), virtio_queue_max(&F.d, 1),
			 F.d.num_queues, F.nrq, virtio_status(&F.d), F.tag_len);
	if (k > (int)sizeof(line) - 100)
		k = (int)sizeof(line) - 100;
	k += fmt_quoted(line + k, sizeof(line) - k - 2, F.tag, F.tag_len);
	line[k++] = '\r';
	line[k++] = '\n';
	serial_write(line, (size_t)k);
	if (!ok)
		return false;
	F.nnodes = 0;
	return fs_init(true) == 0;
}

static void fs_stop(void)
{
	if (cmdline_u64("probe.fs.destroy", 1)) {
		req_begin(FUSE_DESTROY, 0);
		int r = req_send(NULL, 0, NULL, 0, NULL);
		result("destroy", "DESTROY", r, NULL);
	}
	probe("fs-done requests=%llu timeouts=%llu bad_replies=%llu bad_why=%s used_len_mismatch=%llu forgets=%llu kicks=%llu"
	      " kicks_suppressed=%llu device_status=0x%x",
	      (unsigned long long)F.requests, (unsigned long long)F.timeouts, (unsigned long long)F.bad_replies,
	      F.bad_why ? F.bad_why : "none", (unsigned long long)F.used_len_mismatch, (unsigned long long)F.forgets,
	      (unsigned long long)(F.rq.kicks + F.hq.kicks), (unsigned long long)(F.rq.kicks_suppressed + F.hq.kicks_suppressed),
	      virtio_status(&F.d));
	virtio_reset(&F.d);	/* §3.3: leave it reset */
}

/* ---- the functional test ---- */

/* An operation whose reply is the out header only, reported as one case */
static void op_case(const char *cs, const char *name, u32 op, u64 nodeid, const void *in, u32 in_len)
{
	result(cs, name, fs_u64_op(op, nodeid, in, in_len), NULL);
}

/* UNLINK / RMDIR of parent/name, after a LOOKUP of it when pre (as Linux would) */
static void name_case(const char *cs, u32 op, u64 parent, const char *name, bool pre)
{
	if (pre)
		prelookup(parent, name);
	int r = fs_name_op(op, parent, name);
	result(cs, op == FUSE_UNLINK ? "UNLINK" : "RMDIR", r, NULL);
}

/* Entry-style result line with the attributes */
static void entry_result(const char *cs, const char *op, int r, const struct fuse_entry_out *e)
{
	char a[200];
	if (r) {
		result(cs, op, r, NULL);
		return;
	}
	attr_str(a, sizeof(a), &e->attr);
	/* cache timeouts (seconds.nanoseconds): the server's cache policy, free in FUSE */
	result(cs, op, r, "nodeid=%llu %s entry_valid=%llu.%09u attr_valid=%llu.%09u", (unsigned long long)e->nodeid, a,
	       (unsigned long long)e->entry_valid, e->entry_valid_nsec, (unsigned long long)e->attr_valid, e->attr_valid_nsec);
}

static void attr_result(const char *cs, const char *op, int r, const struct fuse_attr *at)
{
	char a[200];
	if (r) {
		result(cs, op, r, NULL);
		return;
	}
	attr_str(a, sizeof(a), at);
	result(cs, op, r, "%s attr_valid=%llu.%09u", a, (unsigned long long)F.attr_valid, F.attr_valid_nsec);
}

/* Read a whole file through an open handle in chunk-byte READs: hash, bytes, requests. */
static int read_all(u64 nodeid, u64 fh, u32 chunk, u64 *bytes, u64 *hash, u32 *reads)
{
	u64 off = 0, h = FNV1A64_INIT;
	*reads = 0;
	int r = 0;
	for (u32 guard = 0; guard < 4096; guard++) {
		u32 got = 0;
		r = fs_read(nodeid, fh, off, chunk, F.big, &got);
		(*reads)++;
		if (r || !got)
			break;
		h = fnv1a64(F.big, got, h);
		off += got;
	}
	*bytes = off;
	*hash = h;
	return r;
}

/* Directory listing: names sorted and joined with ',' (at most NAMES_MAX names) */
struct listing {
	char names[NAMES_MAX][NAME_LEN];
	u32 types[NAMES_MAX];
	u32 n, total, requests, with_nodeid, bad;
};

static struct listing lst;	/* one listing at a time */
static char names[NAMES_MAX * (NAME_LEN + 8)];

static void list_add(struct listing *l, const char *name, u32 len, u32 type)
{
	l->total++;
	if (l->n >= NAMES_MAX)
		return;
	u32 k = len < NAME_LEN - 1 ? len : NAME_LEN - 1;
	memcpy(l->names[l->n], name, k);
	l->names[l->n][k] = 0;
	l->types[l->n] = type;
	l->n++;
}

static void list_join(struct listing *l, char *out, size_t size)
{
	/* insertion sort (names with their types) */
	for (u32 i = 1; i < l->n; i++)
		for (u32 j = i; j > 0 && strcmp(l->names[j - 1], l->names[j]) > 0; j--) {
			char t[NAME_LEN];
			memcpy(t, l->names[j], NAME_LEN);
			memcpy(l->names[j], l->names[j - 1], NAME_LEN);
			memcpy(l->names[j - 1], t, NAME_LEN);
			u32 ty = l->types[j];
			l->types[j] = l->types[j - 1];
			l->types[j - 1] = ty;
		}
	size_t o = 0;
	out[0] = 0;
	for (u32 i = 0; i < l->n && o + 1 < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s:%u", i ? "," : "", l->names[i], l->types[i]);
}

/* READDIR or READDIRPLUS until an empty reply; size = bytes asked per request */
static int list_dir(u32 op, u64 nodeid, u64 fh, u32 size, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	u64 off = 0;
	bool plus = op == FUSE_READDIRPLUS;
	int r = 0;
	for (u32 guard = 0; guard < 256; guard++) {
		struct fuse_read_in in = { .fh = fh, .offset = off, .size = size };
		req_begin(op, nodeid);
		req_put(&in, sizeof(in));
		u32 got = 0;
		r = req_send(NULL, 0, F.big, size, &got);
		l->requests++;
		if (r || !got)
			break;
		u32 p = 0;
		bool progressed = false;
		while (p < got) {
			const struct fuse_entry_out *e = NULL;
			u32 base = p;
			if (plus) {
				if (p + sizeof(struct fuse_entry_out) > got) {
					l->bad++;
					break;
				}
				e = (const struct fuse_entry_out *)(F.big + p);
				base = p + (u32)sizeof(struct fuse_entry_out);
			}
			if (base + sizeof(struct fuse_dirent) > got) {
				l->bad++;
				break;
			}
			const struct fuse_dirent *d = (const struct fuse_dirent *)(F.big + base);
			u32 rec = FUSE_DIRENT_ALIGN((u32)sizeof(struct fuse_dirent) + d->namelen);
			if (!d->namelen || d->namelen > 1024 || base + rec > got) {
				l->bad++;
				break;
			}
			list_add(l, (const char *)(d + 1), d->namelen, d->type);
			if (e && e->nodeid) {
				l->with_nodeid++;
				track(e->nodeid);	/* each READDIRPLUS entry with a nodeid is a lookup */
			}
			off = d->off;
			progressed = true;
			p = base + rec;
		}
		if (!progressed)
			break;
	}
	return r;
}

/* The ino of root's parent as the server answers (".." at the root) */
static void test_errors(u64 hello_node)
{
	struct fuse_entry_out e;
	struct fuse_attr a;
	int r = fs_lookup(FUSE_ROOT_ID, "no-such-file", &e);
	result("lookup-missing", "LOOKUP", r, NULL);
	r = fs_lookup(FUSE_ROOT_ID, "dir/a.txt", &e);
	entry_result("lookup-slash", "LOOKUP", r, &e);
	r = fs_lookup(FUSE_ROOT_ID, "", &e);
	entry_result("lookup-empty-name", "LOOKUP", r, &e);
	r = fs_getattr(0x7777777777ull, &a);
	attr_result("getattr-bad-nodeid", "GETATTR", r, &a);
	r = fs_lookup(0x7777777777ull, "hello.txt", &e);
	entry_result("lookup-bad-parent", "LOOKUP", r, &e);
	r = fs_lookup(hello_node, "x", &e);
	entry_result("lookup-in-file", "LOOKUP", r, &e);
	/* an opcode FUSE does not define */
	req_begin(1000, FUSE_ROOT_ID);
	r = req_send(NULL, 0, NULL, 0, NULL);
	result("unknown-opcode", "1000", r, NULL);
	/* FUSE_MKNOD without the mknod_in argument: a short request */
	req_begin(FUSE_MKNOD, FUSE_ROOT_ID);
	r = req_send(NULL, 0, F.rep, sizeof(struct fuse_entry_out), NULL);
	result("mknod-short", "MKNOD", r, NULL);
}

static void test_confinement(void)
{
	struct fuse_entry_out e, e2;
	struct fuse_open_out o;
	char buf[256], tmp[300];
	u32 len = 0;
	/* ".." at the root stays at the root */
	int r = fs_lookup(FUSE_ROOT_ID, "..", &e);
	entry_result("lookup-dotdot-root", "LOOKUP", r, &e);
	result("dotdot-is-root", "LOOKUP", r, "same_ino=%u", !r && e.attr.ino == F.root_ino ? 1 : 0);
	if (!r) {
		r = fs_lookup(e.nodeid, "secret.txt", &e2);
		entry_result("dotdot-secret", "LOOKUP", r, &e2);
	}
	r = fs_lookup(FUSE_ROOT_ID, ".", &e);
	entry_result("lookup-dot-root", "LOOKUP", r, &e);
	result("dot-is-root", "LOOKUP", r, "same_ino=%u", !r && e.attr.ino == F.root_ino ? 1 : 0);
	struct fuse_entry_out dir;
	r = fs_lookup(FUSE_ROOT_ID, "dir", &dir);
	if (!r) {
		r = fs_lookup(dir.nodeid, "..", &e);
		entry_result("dir-dotdot", "LOOKUP", r, &e);
		result("dir-dotdot-is-root", "LOOKUP", r, "same_ino=%u", !r && e.attr.ino == F.root_ino ? 1 : 0);
	}
	/* names that leave the directory if a server joined host paths: every one must fail */
	static const struct { const char *cs; u32 op; const char *name; } bad[] = {
		{ "create-slash", FUSE_CREATE, "dir/evil.txt" },
		{ "create-dotdot-name", FUSE_CREATE, "../evil.txt" },
		{ "create-dotdot", FUSE_CREATE, ".." },
		{ "mkdir-slash", FUSE_MKDIR, "dir/evil" },
		{ "mkdir-dotdot-name", FUSE_MKDIR, "../evil" },
		{ "mknod-dotdot-name", FUSE_MKNOD, "../evil-node" },
		{ "symlink-dotdot-name", FUSE_SYMLINK, "../evil-link" },
		{ "link-dotdot-name", FUSE_LINK, "../evil-hard" },
		{ "rename-out", FUSE_RENAME, "../escaped.txt" },
		{ "rename-in", FUSE_RENAME2, "../secret.txt" },
		{ "unlink-dotdot-name", FUSE_UNLINK, "../secret.txt" },
		{ "rmdir-dotdot", FUSE_RMDIR, ".." },
	};
	u64 hello_node = 0;
	if (!fs_lookup(FUSE_ROOT_ID, "hello.txt", &e))
		hello_node = e.nodeid;
	for (u32 i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fuse_open_out fo;
		const char *opn = "?";
		switch (bad[i].op) {
		case FUSE_CREATE:
			opn = "CREATE";
			r = fs_create(FUSE_ROOT_ID, bad[i].name, L_O_WRONLY | L_O_CREAT | L_O_EXCL, L_S_IFREG | 0644, &e2, &fo);
			if (!r)
				fs_release(FUSE_RELEASE, e2.nodeid, fo.fh, L_O_WRONLY);
			break;
		case FUSE_MKDIR:
			opn = "MKDIR";
			r = fs_mkdir(FUSE_ROOT_ID, bad[i].name, L_S_IFDIR | 0755, &e2);
			break;
		case FUSE_MKNOD:
			opn = "MKNOD";
			r = fs_mknod(FUSE_ROOT_ID, bad[i].name, L_S_IFREG | 0644, &e2);
			break;
		case FUSE_SYMLINK:
			opn = "SYMLINK";
			r = fs_symlink(FUSE_ROOT_ID, bad[i].name, "hello.txt", &e2);
			break;
		case FUSE_LINK:
			opn = "LINK";
			r = fs_link(hello_node, FUSE_ROOT_ID, bad[i].name, &e2);
			break;
		case FUSE_RENAME:	/* a file of the share to a name outside */
			opn = "RENAME";
			prelookup(FUSE_ROOT_ID, "exch-b.txt");
			r = fs_rename(FUSE_ROOT_ID, "exch-b.txt", FUSE_ROOT_ID, bad[i].name, -1);
			break;
		case FUSE_RENAME2:	/* a file outside into the share */
			opn = "RENAME";
			r = fs_rename(FUSE_ROOT_ID, bad[i].name, FUSE_ROOT_ID, "stolen.txt", -1);
			break;
		default:
			opn = bad[i].op == FUSE_UNLINK ? "UNLINK" : "RMDIR";
			r = fs_name_op(bad[i].op, FUSE_ROOT_ID, bad[i].name);
			break;
		}
		result(bad[i].cs, opn, r, NULL);
	}

	/* host symlinks to files and directories outside the share */
	static const char *const links[] = { "escape", "escape-rel" };
	for (u32 i = 0; i < 2; i++) {
		char cs[40];
		snprintf(cs, sizeof(cs), "lookup-%s", links[i]);
		r = fs_lookup(FUSE_ROOT_ID, links[i], &e);
		entry_result(cs, "LOOKUP", r, &e);
		if (r)
			continue;
		snprintf(cs, sizeof(cs), "readlink-%s", links[i]);
		int r2 = fs_readlink(e.nodeid, buf, sizeof(buf), &len);
		fmt_quoted(tmp, sizeof(tmp), buf, r2 ? 0 : len);
		result(cs, "READLINK", r2, "len=%u target=%s", len, tmp);
		static const u32 fl[] = { L_O_RDONLY, L_O_RDONLY | L_O_NOFOLLOW };
		for (u32 k = 0; k < 2; k++) {
			snprintf(cs, sizeof(cs), "open-%s%s", links[i], k ? "-nofollow" : "");
			r2 = fs_open(FUSE_OPEN, e.nodeid, fl[k], &o);
			if (r2) {
				result(cs, "OPEN", r2, NULL);
				continue;
			}
			/* it opened: whatever READ gives must not be the secret (the test compares hashes) */
			u32 got = 0;
			int r3 = fs_read(e.nodeid, o.fh, 0, 4096, F.big, &got);
			result(cs, "OPEN", r2, "read_err=%s read_bytes=%u fnv1a64=%016llx", err_str(r3, tmp, 16), got,
			       (unsigned long long)fnv1a64(F.big, got, FNV1A64_INIT));
			fs_release(FUSE_RELEASE, e.nodeid, o.fh, fl[k]);
		}
	}
	r = fs_lookup(FUSE_ROOT_ID, "escape-dir", &e);
	entry_result("lookup-escape-dir", "LOOKUP", r, &e);
	if (!r) {
		r = fs_lookup(e.nodeid, "secret2.txt", &e2);
		entry_result("escape-dir-child", "LOOKUP", r, &e2);
		r = fs_open(FUSE_OPENDIR, e.nodeid, L_O_RDONLY | L_O_DIRECTORY, &o);
		if (!r) {
			int r2 = list_dir(FUSE_READDIR, e.nodeid, o.fh, 4096, &lst);
			result("opendir-escape-dir", "OPENDIR", r, "readdir_err=%s entries=%u", err_str(r2, tmp, 16), lst.total);
			fs_release(FUSE_RELEASEDIR, e.nodeid, o.fh, 0);
		} else {
			result("opendir-escape-dir", "OPENDIR", r, NULL);
		}
	}
}

/*
 * Malformed requests (the driver breaks the FUSE or virtio-fs framing): the device's answer is
 * its own choice (an error reply, or DEVICE_NEEDS_RESET), but it must go on serving, after a
 * reset if it asked for one. One line each:
 *   fs-bad case= result=completed|needs-reset|no-completion used_len= reply_err= reply_len=
 *          device_status= reinit=0|1 after=<GETATTR of the root afterwards>
 * in_len: device-readable bytes (0: all that was built); oh_len/out_len: writable bytes for the
 * out header / the reply (0: no such descriptor); len_delta: added to in_header.len.
 * probe.fs.bad=all runs them all, probe.fs.bad=<case>,<case> those named (virtiofsd stops serving
 * after some of them, even across a device reset, so QEMU runs need one boot per case).
 */
static void bad_case(const char *cs, struct virtq *q, int len_delta, u32 in_len, u32 oh_len, u32 out_len)
{
	char tmp[16], tmp2[16];
	if (!cmdline_list_has("probe.fs.bad", "all") && !cmdline_list_has("probe.fs.bad", cs))
		return;
	u64 unique = ++F.unique;
	struct fuse_in_header *ih = (struct fuse_in_header *)F.req;
	*ih = (struct fuse_in_header){ .len = (u32)((int)F.req_len + len_delta), .opcode = cur_op, .unique = unique,
				       .nodeid = cur_node, .pid = 1 };
	F.oh->len = 0xffffffffu;
	F.oh->error = 1;
	F.oh->unique = 0;
	struct vq_seg sg[3];
	u16 n = 0;
	sg[n++] = (struct vq_seg){ (u64)(uintptr_t)F.req, in_len ? in_len : F.req_len, false };
	if (oh_len)
		sg[n++] = (struct vq_seg){ (u64)(uintptr_t)F.oh, oh_len, true };
	if (out_len)
		sg[n++] = (struct vq_seg){ (u64)(uintptr_t)F.rep, out_len, true };
	void *token = (void *)(uintptr_t)unique;
	const char *res = "queue-full";
	u32 used = 0;
	if (vq_add(q, sg, n, token, true) >= 0) {
		F.requests++;
		vq_kick(q, false);
		u64 deadline = tsc_deadline_us(cmdline_u64("probe.fs.bad_timeout_ms", 500) * 1000);
		res = "no-completion";
		while (tsc_before(deadline)) {
			void *t;
			u32 len;
			if (vq_pop(q, &t, &len) && t == token) {
				used = len;
				res = "completed";
				break;
			}
			if (fs_needs_reset()) {
				res = "needs-reset";
				break;
			}
			cpu_relax();
		}
	}
	barrier();
	bool done = !strcmp(res, "completed");
	bool wrote = done && oh_len >= sizeof(struct fuse_out_header) && F.oh->unique == unique;
	int reply_err = F.oh->error, reply_len = (int)F.oh->len;	/* before the next request reuses it */
	u8 st = virtio_status(&F.d);
	bool reinit = !done || (st & VIRTIO_STATUS_NEEDS_RESET);
	if (reinit) {	/* start over: reset, queues, INIT (node ids and handles are gone) */
		F.nnodes = 0;
		if (!fs_queues() || fs_init(false))
			probe("fs-bad case=%s error=reinit-failed", cs);
	}
	struct fuse_attr a;
	int after = fs_getattr(FUSE_ROOT_ID, &a);
	probe("fs-bad case=%s result=%s used_len=%u reply_err=%s reply_len=%d device_status=0x%x reinit=%u after=%s", cs, res, used,
	      wrote ? err_str(reply_err, tmp, sizeof(tmp)) : "none", wrote ? reply_len : -1, st, reinit ? 1 : 0,
	      err_str(after, tmp2, sizeof(tmp2)));
}

static void test_bad(void)
{
	struct fuse_getattr_in gin = { 0 };
	const u32 OH = sizeof(struct fuse_out_header), AO = sizeof(struct fuse_attr_out);
#define GETATTR_ROOT() do { req_begin(FUSE_GETATTR, FUSE_ROOT_ID); req_put(&gin, sizeof(gin)); } while (0)
	GETATTR_ROOT();
	bad_case("in-len-too-big", &F.rq, 64, 0, OH, AO);
	GETATTR_ROOT();
	bad_case("in-len-too-small", &F.rq, -(int)sizeof(gin) - 8, 0, OH, AO);
	GETATTR_ROOT();
	bad_case("in-header-truncated", &F.rq, 0, 20, OH, AO);
	GETATTR_ROOT();
	bad_case("no-writable-buffer", &F.rq, 0, 0, 0, 0);
	GETATTR_ROOT();
	bad_case("reply-header-only", &F.rq, 0, 0, OH, 0);
	GETATTR_ROOT();
	bad_case("reply-buffer-short", &F.rq, 0, 0, OH, 8);
	GETATTR_ROOT();
	bad_case("out-header-short", &F.rq, 0, 0, 8, 0);
	req_begin(0, FUSE_ROOT_ID);
	bad_case("opcode-0", &F.rq, 0, 0, OH, 64);
	struct fuse_init_in in = { .major = FUSE_KERNEL_VERSION, .minor = F.minor, .max_readahead = 128 * 1024, .flags = F.flags };
	req_begin(FUSE_INIT, 0);
	req_put(&in, sizeof(in));
	bad_case("init-again", &F.rq, 0, 0, OH, sizeof(struct fuse_init_out));
	struct fuse_forget_in fin = { .nlookup = 5 };
	req_begin(FUSE_FORGET, 0x7777777777ull);
	req_put(&fin, sizeof(fin));
	bad_case("forget-unknown-nodeid", &F.hq, 0, 0, 0, 0);
	struct fuse_batch_forget_in bin = { .count = 1000 };
	struct fuse_forget_one one = { 0x7777777777ull, 1 };
	req_begin(FUSE_BATCH_FORGET, 0);
	req_put(&bin, sizeof(bin));
	req_put(&one, sizeof(one));
	bad_case("batch-forget-count-too-big", &F.hq, 0, 0, 0, 0);
	/* a request on the hiprio queue that expects a reply (Linux sends only FORGETs there) */
	GETATTR_ROOT();
	bad_case("getattr-on-hiprio", &F.hq, 0, 0, OH, AO);
#undef GETATTR_ROOT
}

/*
 * Requests in flight together: READs of 128 KiB covering sparse.bin, each followed by a GETATTR
 * of the root, all added before one notification. Every reply must carry its own unique, error 0
 * and the right length, whatever order they complete in (a server that moves large I/O off its
 * main thread answers the small ones first). The data, put back in file order, must hash as the
 * host's file.
 */
#define CONC_READS	16
struct conc_slot {
	struct fuse_in_header ih;
	union {
		struct fuse_read_in rd;
		struct fuse_getattr_in ga;
	} in;
	struct fuse_out_header oh;
	u8 out[sizeof(struct fuse_attr_out)];
	u64 unique;
	u32 want, used;	/* reply bytes expected (after the out header); used length */
	bool done;
};

static void test_concurrent(void)
{
	static struct conc_slot *sl;
	static u8 *cbuf;
	const u32 chunk = 131072;
	if (!sl) {
		sl = dma_alloc(sizeof(*sl) * 2 * CONC_READS, 64);
		cbuf = dma_alloc((u64)chunk * CONC_READS, 4096);
	}
	struct fuse_entry_out e;
	struct fuse_open_out o;
	int r = !sl || !cbuf ? FS_E_QFULL : fs_lookup(FUSE_ROOT_ID, "sparse.bin", &e);
	if (!r)
		r = fs_open(FUSE_OPEN, e.nodeid, L_O_RDONLY, &o);
	if (r) {
		result("concurrent-reads", "READ", r, NULL);
		return;
	}
	u64 size = e.attr.size;
	u32 nreads = (u32)((size + chunk - 1) / chunk);
	if (nreads > CONC_READS)
		nreads = CONC_READS;
	u32 n = 2 * nreads, added = 0;
	for (u32 i = 0; i < n; i++) {
		struct conc_slot *c = &sl[i];
		bool rd = !(i & 1);
		u64 off = (u64)(i / 2) * chunk;
		memset(c, 0, sizeof(*c));
		c->unique = ++F.unique;
		c->oh.len = 0xffffffffu;
		c->oh.error = 1;
		u32 in_len = (u32)sizeof(c->ih) + (rd ? (u32)sizeof(c->in.rd) : (u32)sizeof(c->in.ga));
		c->ih = (struct fuse_in_header){ .len = in_len, .opcode = rd ? FUSE_READ : FUSE_GETATTR, .unique = c->unique,
						 .nodeid = rd ? e.nodeid : FUSE_ROOT_ID, .pid = 1 };
		if (rd)
			c->in.rd = (struct fuse_read_in){ .fh = o.fh, .offset = off, .size = chunk };
		c->want = rd ? (u32)(size - off < chunk ? size - off : chunk) : (u32)sizeof(struct fuse_attr_out);
		struct vq_seg sg[3] = {
			{ (u64)(uintptr_t)&c->ih, in_len, false },
			{ (u64)(uintptr_t)&c->oh, sizeof(c->oh), true },
			{ rd ? (u64)(uintptr_t)(cbuf + (u64)(i / 2) * chunk) : (u64)(uintptr_t)c->out, rd ? chunk : (u32)sizeof(c->out), true },
		};
		if (vq_add(&F.rq, sg, 3, (void *)(uintptr_t)c->unique, true) < 0)
			break;
		added++;
		F.requests++;
	}
	vq_kick(&F.rq, false);	/* one notification for all of them */
	char order[3 * 2 * CONC_READS + 1];
	u32 olen = 0, completed = 0, ok = 0, in_order = 1;
	u64 deadline = tsc_deadline_us(F.timeout_us);
	while (completed < added && tsc_before(deadline)) {
		void *t;
		u32 len;
		if (!vq_pop(&F.rq, &t, &len)) {
			cpu_relax();
			continue;
		}
		for (u32 i = 0; i < added; i++) {
			struct conc_slot *c = &sl[i];
			if ((void *)(uintptr_t)c->unique != t || c->done)
				continue;
			barrier();
			c->done = true;
			c->used = len;
			in_order &= i == completed;
			completed++;
			ok += c->oh.unique == c->unique && c->oh.error == 0 && c->oh.len == sizeof(c->oh) + c->want;
			olen += (u32)snprintf(order + olen, sizeof(order) - olen, "%s%c%u", olen ? "," : "", i & 1 ? 'g' : 'r', i / 2);
		}
	}
	if (completed < added)
		F.timeouts++;
	u64 h = FNV1A64_INIT, bytes = 0;
	for (u32 i = 0; i < added; i += 2) {
		if (!sl[i].done || sl[i].oh.error)
			break;
		u32 got = sl[i].oh.len - (u32)sizeof(sl[i].oh);
		h = fnv1a64(cbuf + (u64)(i / 2) * chunk, got, h);
		bytes += got;
	}
	order[olen] = 0;
	result("concurrent-reads", "READ", completed < added ? FS_E_TIMEOUT : 0,
	       "requests=%u completed=%u replies_ok=%u bytes=%llu fnv1a64=%016llx in_order=%u order=%s", added, completed, ok,
	       (unsigned long long)bytes, (unsigned long long)h, in_order, order);
	fs_release(FUSE_RELEASE, e.nodeid, o.fh, L_O_RDONLY);
}

static void fs_test(void)
{
	if (!fs_start("fs"))
		return;
	char tmp[16], buf[300], q[400];
	struct fuse_entry_out e, hello;
	struct fuse_attr a;
	struct fuse_open_out o;
	int r;

	/* root and a file the host wrote */
	r = fs_getattr(FUSE_ROOT_ID, &a);
	attr_result("getattr-root", "GETATTR", r, &a);
	F.root_ino = a.ino;
	r = fs_lookup(FUSE_ROOT_ID, "hello.txt", &hello);
	entry_result("lookup-file", "LOOKUP", r, &hello);
	if (r) {
		probe("fs error=no-hello-txt");
		fs_stop();
		return;
	}
	u64 hn = hello.nodeid;
	r = fs_getattr(hn, &a);
	attr_result("getattr-file", "GETATTR", r, &a);
	u64 hello_size = a.size;
	r = fs_open(FUSE_OPEN, hn, L_O_RDONLY, &o);
	result("open-file", "OPEN", r, "fh=%llu open_flags=0x%x", (unsigned long long)o.fh, o.open_flags);
	if (!r) {
		u64 bytes, h;
		u32 reads;
		int r2 = read_all(hn, o.fh, 65536, &bytes, &h, &reads);
		result("read-file", "READ", r2, "bytes=%llu reads=%u fnv1a64=%016llx", (unsigned long long)bytes, reads,
		       (unsigned long long)h);
		/* 1 byte at an odd offset, and at end of file */
		u32 got = 0;
		r2 = fs_read(hn, o.fh, 12345, 1, F.big, &got);
		result("read-odd-offset", "READ", r2, "bytes=%u byte=%u", got, got ? F.big[0] : 0);
		r2 = fs_read(hn, o.fh, hello_size, 4096, F.big, &got);
		result("read-eof", "READ", r2, "bytes=%u", got);
		r2 = fs_read(hn, o.fh, hello_size + 1000000, 4096, F.big, &got);
		result("read-past-eof", "READ", r2, "bytes=%u", got);
		struct fuse_flush_in fl = { .fh = o.fh };
		op_case("flush-file", "FLUSH", FUSE_FLUSH, hn, &fl, sizeof(fl));
		r2 = fs_release(FUSE_RELEASE, hn, o.fh, L_O_RDONLY);
		result("release-file", "RELEASE", r2, NULL);
	}
	struct fuse_access_in ac = { .mask = L_R_OK };
	op_case("access-read", "ACCESS", FUSE_ACCESS, hn, &ac, sizeof(ac));
	ac.mask = L_F_OK;
	op_case("access-root-exists", "ACCESS", FUSE_ACCESS, FUSE_ROOT_ID, &ac, sizeof(ac));
	ac.mask = L_X_OK;
	op_case("access-exec", "ACCESS", FUSE_ACCESS, hn, &ac, sizeof(ac));

	test_errors(hn);

	/* CREATE + WRITE + FLUSH + FSYNC + RELEASE; the host checks the content */
	struct fuse_entry_out ce;
	r = fs_create(FUSE_ROOT_ID, "created.txt", L_O_WRONLY | L_O_CREAT | L_O_EXCL, L_S_IFREG | 0644, &ce, &o);
	entry_result("create-file", "CREATE", r, &ce);
	if (!r) {
		u64 cn = ce.nodeid, fh = o.fh;
		xorshift_fill(F.big, 25000, 7);
		u64 h = fnv1a64(F.big, 25000, FNV1A64_INIT), h10 = fnv1a64(F.big, 10000, FNV1A64_INIT);
		static const u32 parts[3][2] = { { 0, 10000 }, { 10000, 10000 }, { 20000, 5000 } };
		u32 total = 0;
		int r2 = 0;
		for (u32 i = 0; i < 3 && !r2; i++) {
			u32 w = 0;
			/* write from a bounce copy: F.big keeps the pattern for the read-back */
			memcpy(F.rep, F.big + parts[i][0], parts[i][1]);
			r2 = fs_write(cn, fh, parts[i][0], F.rep, parts[i][1], &w);
			total += w;
		}
		result("write-file", "WRITE", r2, "written=%u fnv1a64=%016llx fnv1a64_first_10000=%016llx", total,
		       (unsigned long long)h, (unsigned long long)h10);
		struct fuse_flush_in fl = { .fh = fh };
		op_case("flush-created", "FLUSH", FUSE_FLUSH, cn, &fl, sizeof(fl));
		struct fuse_fsync_in fs = { .fh = fh };
		op_case("fsync-created", "FSYNC", FUSE_FSYNC, cn, &fs, sizeof(fs));
		fs.fsync_flags = FUSE_FSYNC_FDATASYNC;
		op_case("fdatasync-created", "FSYNC", FUSE_FSYNC, cn, &fs, sizeof(fs));
		r2 = fs_release(FUSE_RELEASE, cn, fh, L_O_WRONLY);
		result("release-created", "RELEASE", r2, NULL);
		r2 = fs_getattr(cn, &a);
		attr_result("getattr-created", "GETATTR", r2, &a);
		/* read back through FUSE */
		r2 = fs_open(FUSE_OPEN, cn, L_O_RDONLY, &o);
		if (!r2) {
			u64 bytes, hb;
			u32 reads;
			int r3 = read_all(cn, o.fh, 65536, &bytes, &hb, &reads);
			result("readback-created", "READ", r3, "bytes=%llu match=%u", (unsigned long long)bytes,
			       bytes == 25000 && hb == h ? 1 : 0);
			fs_release(FUSE_RELEASE, cn, o.fh, L_O_RDONLY);
		} else {
			result("readback-created", "OPEN", r2, NULL);
		}
		/* SETATTR mode, then size */
		struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = L_S_IFREG | 0600 };
		r2 = fs_setattr(cn, &sa, &a);
		attr_result("setattr-mode", "SETATTR", r2, &a);
		sa = (struct fuse_setattr_in){ .valid = FATTR_SIZE, .size = 10000 };
		r2 = fs_setattr(cn, &sa, &a);
		attr_result("setattr-size", "SETATTR", r2, &a);
		r2 = fs_getattr(cn, &a);
		attr_result("getattr-after-setattr", "GETATTR", r2, &a);
		sa = (struct fuse_setattr_in){ .valid = FATTR_UID | FATTR_GID, .uid = 1234, .gid = 5678 };
		r2 = fs_setattr(cn, &sa, &a);
		attr_result("setattr-owner", "SETATTR", r2, &a);
		sa = (struct fuse_setattr_in){ .valid = FATTR_ATIME | FATTR_MTIME, .atime = 1000000000, .atimensec = 5,
					       .mtime = 1234567890, .mtimensec = 123456789 };
		r2 = fs_setattr(cn, &sa, &a);
		result("setattr-times", "SETATTR", r2, "atime=%llu atimensec=%u mtime=%llu mtimensec=%u", (unsigned long long)a.atime,
		       a.atimensec, (unsigned long long)a.mtime, a.mtimensec);
	}
	r = fs_create(FUSE_ROOT_ID, "created.txt", L_O_WRONLY | L_O_CREAT | L_O_EXCL, L_S_IFREG | 0644, &e, &o);
	entry_result("create-exists", "CREATE", r, &e);
	if (!r)
		fs_release(FUSE_RELEASE, e.nodeid, o.fh, L_O_WRONLY);

	/* FALLOCATE on a new file */
	r = fs_create(FUSE_ROOT_ID, "falloc.bin", L_O_RDWR | L_O_CREAT | L_O_EXCL, L_S_IFREG | 0644, &e, &o);
	entry_result("create-falloc", "CREATE", r, &e);
	if (!r) {
		struct fuse_fallocate_in fa = { .fh = o.fh, .offset = 0, .length = 1 << 20, .mode = 0 };
		int r2 = fs_u64_op(FUSE_FALLOCATE, e.nodeid, &fa, sizeof(fa));
		int r3 = fs_getattr(e.nodeid, &a);
		result("fallocate", "FALLOCATE", r2, "getattr_err=%s size=%llu blocks=%llu", err_str(r3, tmp, sizeof(tmp)),
		       (unsigned long long)a.size, (unsigned long long)a.blocks);
		u64 before = a.blocks;
		fa = (struct fuse_fallocate_in){ .fh = o.fh, .offset = 0, .length = 65536,
						 .mode = L_FALLOC_FL_PUNCH_HOLE | L_FALLOC_FL_KEEP_SIZE };
		r2 = fs_u64_op(FUSE_FALLOCATE, e.nodeid, &fa, sizeof(fa));
		r3 = fs_getattr(e.nodeid, &a);
		result("fallocate-punch-hole", "FALLOCATE", r2, "getattr_err=%s size=%llu blocks=%llu blocks_freed=%lld",
		       err_str(r3, tmp, sizeof(tmp)), (unsigned long long)a.size, (unsigned long long)a.blocks,
		       (long long)(before - a.blocks));
		fs_release(FUSE_RELEASE, e.nodeid, o.fh, L_O_RDWR);
	}

	/* LSEEK on the host's sparse file: data [0,64K), hole, data [1M, 1M+64K) */
	r = fs_lookup(FUSE_ROOT_ID, "sparse.bin", &e);
	if (!r)
		r = fs_open(FUSE_OPEN, e.nodeid, L_O_RDONLY, &o);
	if (r) {
		result("lseek-open", "OPEN", r, NULL);
	} else {
		static const struct { const char *cs; u32 whence; u64 off; } sk[] = {
			{ "lseek-data-0", L_SEEK_DATA, 0 },
			{ "lseek-hole-0", L_SEEK_HOLE, 0 },
			{ "lseek-data-in-hole", L_SEEK_DATA, 65536 },
			{ "lseek-hole-in-second", L_SEEK_HOLE, 1 << 20 },
			{ "lseek-data-at-eof", L_SEEK_DATA, (1 << 20) + 65536 },
		};
		for (u32 i = 0; i < sizeof(sk) / sizeof(sk[0]); i++) {
			u64 res = 0;
			int r2 = fs_lseek(e.nodeid, o.fh, sk[i].off, sk[i].whence, &res);
			result(sk[i].cs, "LSEEK", r2, "whence=%u offset=%llu result=%llu", sk[i].whence,
			       (unsigned long long)sk[i].off, (unsigned long long)res);
		}
		fs_release(FUSE_RELEASE, e.nodeid, o.fh, L_O_RDONLY);
	}

	/* MKDIR / RMDIR */
	struct fuse_entry_out nd;
	r = fs_mkdir(FUSE_ROOT_ID, "newdir", L_S_IFDIR | 0755, &nd);
	entry_result("mkdir", "MKDIR", r, &nd);
	r = fs_mkdir(FUSE_ROOT_ID, "newdir", L_S_IFDIR | 0755, &e);
	entry_result("mkdir-exists", "MKDIR", r, &e);
	if (!fs_lookup(FUSE_ROOT_ID, "newdir", &e)) {
		r = fs_create(e.nodeid, "inner.txt", L_O_WRONLY | L_O_CREAT, L_S_IFREG | 0644, &ce, &o);
		entry_result("create-inner", "CREATE", r, &ce);
		if (!r)
			fs_release(FUSE_RELEASE, ce.nodeid, o.fh, L_O_WRONLY);
		name_case("rmdir-nonempty", FUSE_RMDIR, FUSE_ROOT_ID, "newdir", false);
		name_case("unlink-inner", FUSE_UNLINK, e.nodeid, "inner.txt", false);
		name_case("rmdir", FUSE_RMDIR, FUSE_ROOT_ID, "newdir", false);
		r = fs_lookup(FUSE_ROOT_ID, "newdir", &e);
		result("lookup-removed-dir", "LOOKUP", r, NULL);
	}
	r = fs_mkdir(FUSE_ROOT_ID, "keptdir", L_S_IFDIR | 0755, &e);
	entry_result("mkdir-kept", "MKDIR", r, &e);
	name_case("rmdir-file", FUSE_RMDIR, FUSE_ROOT_ID, "hello.txt", false);
	r = fs_mknod(FUSE_ROOT_ID, "fifo", L_S_IFIFO | 0644, &e);
	entry_result("mknod-fifo", "MKNOD", r, &e);
	r = fs_mknod(FUSE_ROOT_ID, "mknod.txt", L_S_IFREG | 0644, &e);
	entry_result("mknod-regular", "MKNOD", r, &e);
	r = fs_mknod(FUSE_ROOT_ID, "mknod.txt", L_S_IFREG | 0644, &e);
	result("mknod-exists", "MKNOD", r, NULL);

	/*
	 * UNLINK and RENAME as Linux sends them: after a LOOKUP of the names (the kernel has a dentry
	 * for whatever it removes or renames). virtiofsd answers EIO for a name it never looked up
	 * (unlink-not-looked-up); FUSE does not say what a server must do then.
	 */
	name_case("unlink-not-looked-up", FUSE_UNLINK, FUSE_ROOT_ID, "nolookup.txt", false);
	name_case("unlink", FUSE_UNLINK, FUSE_ROOT_ID, "todelete.txt", true);
	r = fs_lookup(FUSE_ROOT_ID, "todelete.txt", &e);
	result("lookup-unlinked", "LOOKUP", r, NULL);
	name_case("unlink-missing", FUSE_UNLINK, FUSE_ROOT_ID, "todelete.txt", false);
	name_case("unlink-dir", FUSE_UNLINK, FUSE_ROOT_ID, "dir", true);

	/* RENAME, RENAME2 */
	static const struct { const char *cs, *op, *from, *to; int flags; } rn[] = {
		{ "rename", "RENAME", "rename-src.txt", "rename-dst.txt", -1 },
		{ "rename-missing", "RENAME", "rename-src.txt", "rename-dst2.txt", -1 },
		{ "rename2-noreplace-exists", "RENAME2", "exch-a.txt", "exch-b.txt", L_RENAME_NOREPLACE },
		{ "rename2-noreplace", "RENAME2", "exch-a.txt", "exch-a2.txt", L_RENAME_NOREPLACE },
		{ "rename2-back", "RENAME2", "exch-a2.txt", "exch-a.txt", 0 },
		{ "rename2-exchange", "RENAME2", "exch-a.txt", "exch-b.txt", L_RENAME_EXCHANGE },
		{ "rename2-exchange-missing", "RENAME2", "exch-a.txt", "exch-c.txt", L_RENAME_EXCHANGE },
		{ "rename2-both-flags", "RENAME2", "exch-a.txt", "exch-b.txt", L_RENAME_EXCHANGE | L_RENAME_NOREPLACE },
		{ "rename2-unknown-flag", "RENAME2", "exch-a.txt", "exch-b.txt", 0x40000000 },
	};
	for (u32 i = 0; i < sizeof(rn) / sizeof(rn[0]); i++) {
		prelookup(FUSE_ROOT_ID, rn[i].from);
		prelookup(FUSE_ROOT_ID, rn[i].to);
		r = fs_rename(FUSE_ROOT_ID, rn[i].from, FUSE_ROOT_ID, rn[i].to, rn[i].flags);
		result(rn[i].cs, rn[i].op, r, NULL);
		if (!strcmp(rn[i].cs, "rename2-exchange")) {
			r = fs_lookup(FUSE_ROOT_ID, "exch-a.txt", &e);
			entry_result("lookup-exchanged", "LOOKUP", r, &e);
		}
	}
	if (!fs_lookup(FUSE_ROOT_ID, "dir", &e)) {
		prelookup(FUSE_ROOT_ID, "rename-dst.txt");
		prelookup(e.nodeid, "moved.txt");
		r = fs_rename(FUSE_ROOT_ID, "rename-dst.txt", e.nodeid, "moved.txt", -1);
		result("rename-into-dir", "RENAME", r, NULL);
	}

	/* SYMLINK + READLINK, LINK */
	u32 ol = 0;
	struct fuse_entry_out se;
	r = fs_symlink(FUSE_ROOT_ID, "sym", "hello.txt", &se);
	entry_result("symlink", "SYMLINK", r, &se);
	if (!r) {
		u32 len = 0;
		int r2 = fs_readlink(se.nodeid, buf, sizeof(buf), &len);
		fmt_quoted(q, sizeof(q), buf, r2 ? 0 : len);
		result("readlink", "READLINK", r2, "len=%u target=%s", len, q);
	}
	r = fs_symlink(FUSE_ROOT_ID, "sym", "other", &e);
	result("symlink-exists", "SYMLINK", r, NULL);
	r = fs_readlink(hn, buf, sizeof(buf), &ol);
	result("readlink-file", "READLINK", r, NULL);
	r = fs_link(hn, FUSE_ROOT_ID, "hardlink.txt", &e);
	entry_result("link", "LINK", r, &e);
	result("link-same-ino", "LINK", r, "same_ino=%u", !r && e.attr.ino == hello.attr.ino ? 1 : 0);
	struct fuse_entry_out de;
	if (!fs_lookup(FUSE_ROOT_ID, "dir", &de)) {
		r = fs_link(de.nodeid, FUSE_ROOT_ID, "dirlink", &e);
		result("link-dir", "LINK", r, NULL);

		/* READDIR / READDIRPLUS */
		r = fs_open(FUSE_OPENDIR, de.nodeid, L_O_RDONLY | L_O_DIRECTORY, &o);
		result("opendir", "OPENDIR", r, "fh=%llu open_flags=0x%x", (unsigned long long)o.fh, o.open_flags);
		if (!r) {
			int r2 = list_dir(FUSE_READDIR, de.nodeid, o.fh, 4096, &lst);
			list_join(&lst, names, 600);
			result("readdir", "READDIR", r2, "entries=%u requests=%u bad=%u names=%s", lst.total, lst.requests, lst.bad, names);
			r2 = list_dir(FUSE_READDIR, de.nodeid, o.fh, 80, &lst);
			list_join(&lst, names, 600);
			result("readdir-small-buffer", "READDIR", r2, "entries=%u requests=%u bad=%u names=%s", lst.total, lst.requests,
			       lst.bad, names);
			struct fuse_fsync_in fs = { .fh = o.fh };
			op_case("fsyncdir", "FSYNCDIR", FUSE_FSYNCDIR, de.nodeid, &fs, sizeof(fs));
			r2 = fs_release(FUSE_RELEASEDIR, de.nodeid, o.fh, 0);
			result("releasedir", "RELEASEDIR", r2, NULL);
		}
		r = fs_open(FUSE_OPENDIR, de.nodeid, L_O_RDONLY | L_O_DIRECTORY, &o);
		if (!r) {
			int r2 = list_dir(FUSE_READDIRPLUS, de.nodeid, o.fh, 8192, &lst);
			list_join(&lst, names, 600);
			result("readdirplus", "READDIRPLUS", r2, "entries=%u with_nodeid=%u requests=%u bad=%u names=%s", lst.total,
			       lst.with_nodeid, lst.requests, lst.bad, names);
			fs_release(FUSE_RELEASEDIR, de.nodeid, o.fh, 0);
		} else {
			result("readdirplus", "OPENDIR", r, NULL);
		}
		r = fs_open(FUSE_OPENDIR, hn, L_O_RDONLY | L_O_DIRECTORY, &o);
		result("opendir-file", "OPENDIR", r, NULL);
		if (!r)
			fs_release(FUSE_RELEASEDIR, hn, o.fh, 0);
	}

	/* STATFS */
	struct fuse_kstatfs st;
	r = fs_statfs(&st);
	result("statfs", "STATFS", r, "bsize=%u frsize=%u namelen=%u blocks=%llu bfree=%llu bavail=%llu files=%llu ffree=%llu",
	       st.bsize, st.frsize, st.namelen, (unsigned long long)st.blocks, (unsigned long long)st.bfree,
	       (unsigned long long)st.bavail, (unsigned long long)st.files, (unsigned long long)st.ffree);

	/* xattrs (user.* namespace) on hello.txt */
	r = fs_setxattr(hn, "user.kvmkit", "probe-value", 0);
	result("setxattr", "SETXATTR", r, NULL);
	r = fs_setxattr(hn, "user.other", "12345", L_XATTR_CREATE);
	result("setxattr-create", "SETXATTR", r, NULL);
	r = fs_setxattr(hn, "user.other", "1", L_XATTR_CREATE);
	result("setxattr-create-exists", "SETXATTR", r, NULL);
	r = fs_setxattr(hn, "user.missing", "1", L_XATTR_REPLACE);
	result("setxattr-replace-missing", "SETXATTR", r, NULL);
	u32 xl = 0;
	r = fs_getxattr(FUSE_GETXATTR, hn, "user.kvmkit", 0, &xl);
	result("getxattr-size", "GETXATTR", r, "size=%u", xl);
	r = fs_getxattr(FUSE_GETXATTR, hn, "user.kvmkit", 256, &xl);
	fmt_quoted(q, sizeof(q), (const char *)F.rep, r ? 0 : (xl < 256 ? xl : 256));
	result("getxattr", "GETXATTR", r, "len=%u value=%s", xl, q);
	r = fs_getxattr(FUSE_GETXATTR, hn, "user.kvmkit", 2, &xl);
	result("getxattr-small-buffer", "GETXATTR", r, NULL);
	r = fs_getxattr(FUSE_LISTXATTR, hn, NULL, 0, &xl);
	result("listxattr-size", "LISTXATTR", r, "size=%u", xl);
	r = fs_getxattr(FUSE_LISTXATTR, hn, NULL, 1024, &xl);
	{
		/* the user.* names, sorted */
		struct listing *lx = &lst;
		memset(lx, 0, sizeof(*lx));
		for (u32 p = 0; !r && p < xl && p < 1024;) {
			u32 n = (u32)strnlen((const char *)F.rep + p, xl - p);
			if (n >= 5 && !memcmp(F.rep + p, "user.", 5))
				list_add(lx, (const char *)F.rep + p, n, 0);
			p += n + 1;
		}
		list_join(lx, buf, sizeof(buf));
		result("listxattr", "LISTXATTR", r, "len=%u user_names=%s", xl, buf);
	}
	r = fs_name_op(FUSE_REMOVEXATTR, hn, "user.other");
	result("removexattr", "REMOVEXATTR", r, NULL);
	r = fs_getxattr(FUSE_GETXATTR, hn, "user.other", 256, &xl);
	result("getxattr-removed", "GETXATTR", r, NULL);
	r = fs_name_op(FUSE_REMOVEXATTR, hn, "user.other");
	result("removexattr-missing", "REMOVEXATTR", r, NULL);

	test_confinement();
	test_concurrent();

	/* FORGET one node (the symlink), BATCH_FORGET the rest; the server keeps answering */
	if (se.nodeid) {
		u64 n = untrack(se.nodeid);
		u32 used = 0;
		r = fs_forget(se.nodeid, n ? n : 1, &used);
		result("forget", "FORGET", r, "nlookup=%llu used_len=%u", (unsigned long long)n, used);
	}
	r = fs_lookup(FUSE_ROOT_ID, "hello.txt", &e);
	entry_result("lookup-after-forget", "LOOKUP", r, &e);
	u32 cnt = 0, used = 0;
	r = fs_batch_forget_all(&cnt, &used);
	result("batch-forget", "BATCH_FORGET", r, "count=%u used_len=%u", cnt, used);
	r = fs_getattr(FUSE_ROOT_ID, &a);
	attr_result("getattr-after-batch-forget", "GETATTR", r, &a);
	if (cmdline_get("probe.fs.bad", NULL, 0))
		test_bad();
	fs_stop();
}
PROBE_TEST("fs", fs_test);

/* ---- fsvisible: what a (changing) allowlist lets the guest see ---- */

/* LOOKUP a path relative to the root, one component at a time; e gets the last entry */
static int walk(const char *path, struct fuse_entry_out *e)
{
	char comp[NAME_LEN];
	u64 parent = FUSE_ROOT_ID;
	int r = -2;
	const char *p = path;
	while (*p) {
		const char *q = p;
		while (*q && *q != '/')
			q++;
		u32 n = (u32)(q - p);
		if (n) {
			if (n >= sizeof(comp))
				return -36;	/* ENAMETOOLONG */
			memcpy(comp, p, n);
			comp[n] = 0;
			r = fs_lookup(parent, comp, e);
			if (r)
				return r;
			parent = e->nodeid;
		}
		p = *q ? q + 1 : q;
	}
	return r;
}

/*
 * probe.test=fsvisible: probe.fs.rounds=N rounds (default 1), probe.fs.round_ms=N apart (default
 * 100), each one line
 *   fs-visible round=<i> <path>=<err> ... root=<names of the root, READDIR> [held_open= held_read=
 *   held_getattr=]
 * for the paths of probe.fs.paths=a,b/c,... (relative to the root). probe.fs.hold=<path> is looked
 * up and opened before the first round; each round then OPENs its nodeid again, READs through the
 * handle opened at the start and GETATTRs it: what happens to what the guest already holds when a
 * path is revoked. Lookup counts are forgotten after every round.
 */
struct visible_line {
	char *buf;
	int size, k;
};

/* " <path>=<LOOKUP result>" onto the round's line; once it is nearly full the rest are not looked up */
static void visible_path(const char *path, void *arg)
{
	struct visible_line *v = arg;
	struct fuse_entry_out e;
	char tmp[16];
	if (v->k < v->size - 100)
		v->k += snprintf(v->buf + v->k, v->size - v->k, " %s=%s", path, err_str(walk(path, &e), tmp, sizeof(tmp)));
}

static void fsvisible_test(void)
{
	if (!fs_start("fs-visible"))
		return;
	static char paths[512], hold[128], line[1024];
	if (!cmdline_get("probe.fs.paths", paths, sizeof(paths)))
		paths[0] = 0;
	bool holding = cmdline_get("probe.fs.hold", hold, sizeof(hold)) && hold[0];
	u64 rounds = cmdline_u64("probe.fs.rounds", 1), round_ms = cmdline_u64("probe.fs.round_ms", 100);
	struct fuse_entry_out e;
	struct fuse_open_out o, o2;
	u64 held = 0, held_fh = 0, held_lookups = 0;
	char tmp[16];
	if (holding) {
		int r = walk(hold, &e);
		if (!r)
			r = fs_open(FUSE_OPEN, e.nodeid, L_O_RDONLY, &o);
		probe("fs-visible hold=%s err=%s", hold, err_str(r, tmp, sizeof(tmp)));
		if (!r) {
			held = e.nodeid;
			held_fh = o.fh;
			held_lookups = untrack(held);	/* kept apart from the per-round forgets */
		}
	}
	for (u64 round = 0; round < rounds; round++) {
		struct visible_line v = { line, sizeof(line), 0 };
		v.k = snprintf(line, sizeof(line), "fs-visible round=%llu", (unsigned long long)round);
		comma_list_each(paths, visible_path, &v);
		int k = v.k;
		int r = fs_open(FUSE_OPENDIR, FUSE_ROOT_ID, L_O_RDONLY | L_O_DIRECTORY, &o2);
		if (!r) {
			r = list_dir(FUSE_READDIR, FUSE_ROOT_ID, o2.fh, 4096, &lst);
			fs_release(FUSE_RELEASEDIR, FUSE_ROOT_ID, o2.fh, 0);
		}
		list_join(&lst, names, 400);
		k += snprintf(line + k, sizeof(line) - k, " root_err=%s root=%s", err_str(r, tmp, sizeof(tmp)), r ? "" : names);
		if (held) {
			struct fuse_attr a;
			u32 got = 0;
			int ro = fs_open(FUSE_OPEN, held, L_O_RDONLY, &o2);
			if (!ro)
				fs_release(FUSE_RELEASE, held, o2.fh, L_O_RDONLY);
			int rr = fs_read(held, held_fh, 0, 4096, F.big, &got);
			int rg = fs_getattr(held, &a);
			k += snprintf(line + k, sizeof(line) - k, " held_open=%s", err_str(ro, tmp, sizeof(tmp)));
			k += snprintf(line + k, sizeof(line) - k, " held_read=%s held_read_bytes=%u", err_str(rr, tmp, sizeof(tmp)), got);
			k += snprintf(line + k, sizeof(line) - k, " held_getattr=%s", err_str(rg, tmp, sizeof(tmp)));
		}
		probe("%s", line);
		u32 c, u;
		fs_batch_forget_all(&c, &u);
		udelay(round_ms * 1000);
	}
	if (held) {
		fs_release(FUSE_RELEASE, held, held_fh, L_O_RDONLY);
		u32 u;
		fs_forget(held, held_lookups, &u);
	}
	fs_stop();
}
PROBE_TEST("fsvisible", fsvisible_test);

/* ---- fsbench ---- */

static bool bench_on(const char *what)
{
	char v[4];
	if (!cmdline_get("probe.fs.bench", v, sizeof(v)))
		return true;
	return cmdline_list_has("probe.fs.bench", what);
}

static void bench_line(const char *cs, u64 ops, u64 bytes, u64 errors, u64 cyc, u64 khz, const char *extra)
{
	u64 us = cyc * 1000 / khz;
	if (!us)
		us = 1;
	u64 mbs10 = bytes * 10 / us;
	probe("fsbench case=%s ops=%llu bytes=%llu errors=%llu tsc_cycles=%llu us=%llu ops_s=%llu mb_s=%llu.%llu tsc_khz=%llu%s%s",
	      cs, (unsigned long long)ops, (unsigned long long)bytes, (unsigned long long)errors, (unsigned long long)cyc,
	      (unsigned long long)us, (unsigned long long)(ops * 1000000 / us), (unsigned long long)(mbs10 / 10),
	      (unsigned long long)(mbs10 % 10), (unsigned long long)khz, extra[0] ? " " : "", extra);
}

/* Sequential WRITEs or READs of bs bytes from offset 0 until total bytes (a READ of 0 bytes,
 * end of file, ends early) */
struct seq {
	u64 bytes, reqs, errs, cyc;
	int first;
};

static struct seq bench_seq(bool write, u64 nodeid, u64 fh, u64 total, u64 bs)
{
	struct seq s = { 0 };
	u64 t0 = rdtsc();
	while (s.bytes < total) {
		u32 got = 0, n = (u32)(total - s.bytes < bs ? total - s.bytes : bs);
		int r = write ? fs_write(nodeid, fh, s.bytes, F.big, n, &got) : fs_read(nodeid, fh, s.bytes, n, F.big, &got);
		s.reqs++;
		if (r || !got || (write && got != n)) {
			if (r || write) {
				s.errs++;
				s.first = r ? r : -5;	/* a short WRITE: EIO */
			}
			break;
		}
		s.bytes += got;
	}
	s.cyc = rdtsc() - t0;
	return s;
}

/* Count an error; true if the device stopped answering (the run ends) */
static bool bench_err(int r, u64 *errs, int *first)
{
	(*errs)++;
	if (!*first)
		*first = r;
	return r == FS_E_TIMEOUT || r == FS_E_NEEDSRESET;
}

/* LOOKUP and OPEN bench.bin, read or write it whole in `bs` requests, RELEASE: one fsbench line */
static void bench_existing(const char *cs, bool write, u64 total, u64 bs, u64 khz)
{
	struct fuse_entry_out e;
	struct fuse_open_out o;
	char tmp[16], ex[160];
	u32 flags = write ? L_O_WRONLY : L_O_RDONLY;
	int r = fs_lookup(FUSE_ROOT_ID, "bench.bin", &e);
	if (!r)
		r = fs_open(FUSE_OPEN, e.nodeid, flags, &o);
	if (r) {
		result("bench-open", "OPEN", r, NULL);
		return;
	}
	struct seq sq = bench_seq(write, e.nodeid, o.fh, total, bs);
	fs_release(FUSE_RELEASE, e.nodeid, o.fh, flags);
	snprintf(ex, sizeof(ex), "bs=%llu first_err=%s", (unsigned long long)bs, err_str(sq.first, tmp, sizeof(tmp)));
	bench_line(cs, sq.reqs, sq.bytes, sq.errs, sq.cyc, khz, ex);
}

static void fsbench_test(void)
{
	if (!fs_start("fsbench"))
		return;
	u64 khz = cmdline_u64("probe.fs.tsc_khz", tsc_khz());
	char tmp[16], ex[160];
	struct fuse_entry_out e;
	struct fuse_open_out o;
	struct fuse_attr a;
	int first = 0;

	if (bench_on("lookup")) {
		u64 n = cmdline_u64("probe.fs.lookups", 10000), errs = 0, done = 0, node = 0;
		u64 t0 = rdtsc();
		for (u64 i = 0; i < n; i++) {
			int r = fs_lookup(FUSE_ROOT_ID, "hello.txt", &e);
			if (!r)
				r = fs_getattr(e.nodeid, &a);
			if (!r)
				node = e.nodeid;
			else if (bench_err(r, &errs, &first))
				break;
			done++;
		}
		u64 cyc = rdtsc() - t0;
		snprintf(ex, sizeof(ex), "first_err=%s", err_str(first, tmp, sizeof(tmp)));
		bench_line("lookup-getattr", done, 0, errs, cyc, khz, ex);
		if (node) {
			u32 used;
			fs_forget(node, untrack(node), &used);
		}
	}

	if (bench_on("create")) {
		u64 files = cmdline_u64("probe.fs.files", 1000), fsz = cmdline_u64("probe.fs.filesize", 4096), errs = 0, done = 0;
		if (fsz > (1 << 20))
			fsz = 1 << 20;
		first = 0;
		struct fuse_entry_out dir;
		int r = fs_mkdir(FUSE_ROOT_ID, "bench-files", L_S_IFDIR | 0755, &dir);
		if (r) {
			result("bench-mkdir", "MKDIR", r, NULL);
		} else {
			/* the directory's lookup is held apart from the files' (forgotten in batches) */
			u64 dir_lookups = untrack(dir.nodeid);
			xorshift_fill(F.big, (u32)fsz, 99);
			u64 t0 = rdtsc();
			for (u64 i = 0; i < files; i++) {
				char name[24];
				snprintf(name, sizeof(name), "f%05llu", (unsigned long long)i);
				u32 w = 0;
				r = fs_create(dir.nodeid, name, L_O_WRONLY | L_O_CREAT | L_O_TRUNC, L_S_IFREG | 0644, &e, &o);
				if (!r) {
					r = fs_write(e.nodeid, o.fh, 0, F.big, (u32)fsz, &w);
					int r2 = fs_release(FUSE_RELEASE, e.nodeid, o.fh, L_O_WRONLY);
					if (!r && w != fsz)
						r = -5;
					if (!r)
						r = r2;
				}
				if (r && bench_err(r, &errs, &first))
					break;
				done++;
				if (F.nnodes >= NODE_MAX - 2) {	/* forget as Linux would under memory pressure */
					u32 c, u;
					fs_batch_forget_all(&c, &u);
				}
			}
			u64 cyc = rdtsc() - t0;
			snprintf(ex, sizeof(ex), "file_bytes=%llu first_err=%s fnv1a64=%016llx", (unsigned long long)fsz,
				 err_str(first, tmp, sizeof(tmp)), (unsigned long long)fnv1a64(F.big, fsz, FNV1A64_INIT));
			bench_line("create-write-release", done, done * fsz, errs, cyc, khz, ex);
			u32 c, u;
			fs_batch_forget_all(&c, &u);
			fs_forget(dir.nodeid, dir_lookups, &u);
		}
	}

	/* request size: probe.fs.bs, at most max_write (WRITE) and max_pages pages (READ) */
	u64 bs = cmdline_u64("probe.fs.bs", 1 << 20);
	if (bs > (1 << 20))
		bs = 1 << 20;
	u64 wbs = F.max_write && bs > F.max_write ? F.max_write : bs;
	u64 rbs = bs > (u64)F.max_pages * 4096 ? (u64)F.max_pages * 4096 : bs;
	u64 total = cmdline_u64("probe.fs.size", 256) << 20;
	for (u64 i = 0; i < bs / 8; i++)
		((u64 *)F.big)[i] = i * 0x9e3779b97f4a7c15ull;

	if (bench_on("seqwrite")) {
		int r = fs_create(FUSE_ROOT_ID, "bench.bin", L_O_WRONLY | L_O_CREAT | L_O_TRUNC, L_S_IFREG | 0644, &e, &o);
		if (r) {
			result("bench-create", "CREATE", r, NULL);
		} else {
			struct seq sq = bench_seq(true, e.nodeid, o.fh, total, wbs);
			struct fuse_fsync_in fs = { .fh = o.fh };
			u64 t1 = rdtsc();
			int rs = fs_u64_op(FUSE_FSYNC, e.nodeid, &fs, sizeof(fs));
			u64 fsync_us = (rdtsc() - t1) * 1000 / khz;
			fs_release(FUSE_RELEASE, e.nodeid, o.fh, L_O_WRONLY);
			snprintf(ex, sizeof(ex), "bs=%llu first_err=%s fsync_err=%s fsync_us=%llu", (unsigned long long)wbs,
				 err_str(sq.first, tmp, sizeof(tmp)), err_str(rs, tmp + 8, 8), (unsigned long long)fsync_us);
			bench_line("seqwrite", sq.reqs, sq.bytes, sq.errs, sq.cyc, khz, ex);
		}
	}

	/* rewrite: bench.bin again, in place (its pages are in the host's page cache: no allocation) */
	if (bench_on("rewrite"))
		bench_existing("rewrite", true, total, wbs, khz);
	if (bench_on("seqread"))
		bench_existing("seqread", false, total, rbs, khz);
	u32 c, u;
	fs_batch_forget_all(&c, &u);
	fs_stop();
}
PROBE_TEST("fsbench", fsbench_test);
