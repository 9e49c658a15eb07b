/**
 * The queue thread of one virtio-fs device (a `worker_threads` Worker; built by tsup as
 * dist/fs-worker.js): an {@link FsQueueService} over the driver's queues, woken by the queues'
 * ioeventfds directly (no hop through the main thread), serving every request inline as crosvm's
 * and virtiofsd's queue threads do, and polling the queue after each batch. The protocol with
 * `VirtioFs` is in fsWorkerProtocol.ts.
 * @module
 */
import koffi from 'koffi';
import { parentPort, workerData } from 'node:worker_threads';
import { signalEventFd, takeEventFd } from '../../../hypervisor/kvm/EventFd';
import { GuestMemory } from '../../../memory/GuestMemory';
import type { VirtioInterrupt } from '../VirtioDevice';
import { VirtQueue } from '../VirtQueue';
import { FS_STATS_FIELDS, FsQueueService } from './FsQueueService';
import type { ResolvedFsOptions } from './VirtioFsOptions';
import { CTL_ACK, type FromFsWorker, type FsWorkerData, type QueueConfig, type ToFsWorker } from './fsWorkerProtocol';

const port = parentPort!;
const data = workerData as FsWorkerData;
const ctl = new Int32Array(data.ctl);
const counters = new Float64Array(data.stats);
const irqfds = new Int32Array(data.irqfds);

function post(m: FromFsWorker): void {
  port.postMessage(m);
}

function ack(seq: number): void {
  Atomics.store(ctl, CTL_ACK, seq);
  Atomics.notify(ctl, CTL_ACK);
}

let service: FsQueueService | undefined;

function open(options: ResolvedFsOptions): void {
  try {
    // Every READ and WRITE inline: this thread is the device's own, so the I/O threads' hops would only add wake-ups.
    service = new FsQueueService(options, Number.POSITIVE_INFINITY);
    service.onProgress = publishStats;
  } catch (e) {
    service = undefined;
    post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  }
  epoch = 0;
  broken = false;
  counters.fill(0);
  publishStats();
}

function publishStats(): void {
  if (!service) return;
  const s = service.stats();
  for (let i = 0; i < FS_STATS_FIELDS.length; i++) counters[i] = s[FS_STATS_FIELDS[i]!];
}

/** The activation in force (0: none); interrupts and resets of older ones are dropped by the main thread. */
let epoch = 0;
/** The queues stopped after a fatal error until the next activation (DEVICE_NEEDS_RESET is the main thread's). */
let broken = false;
let mem: GuestMemory | undefined;
const doorbells: { fd: number; handle: ReturnType<typeof koffi.node.poll> }[] = [];

function serve(index: number): void {
  if (!service?.active || broken) return;
  try {
    service.processQueue(index);
  } catch (e) {
    broken = true;
    post({ type: 'needsReset', epoch, message: e instanceof Error ? e.message : String(e) });
  }
}

/** Forget the driver's activation: its guest-memory views and epoch. */
function dropActivation(): void {
  mem?.free();
  mem = undefined;
  epoch = 0;
}

function queueFrom(c: QueueConfig, m: GuestMemory, features: bigint): VirtQueue {
  const q = new VirtQueue(c.maxSize, { mem: m, index: c.index });
  q.size = c.size;
  q.descTable = c.descTable;
  q.availRing = c.availRing;
  q.usedRing = c.usedRing;
  q.setFeatures(features);
  q.validate();
  q.ready = true;
  return q;
}

function activate(m: Extract<ToFsWorker, { type: 'activate' }>): void {
  epoch = m.epoch;
  broken = false;
  if (!service) {
    post({ type: 'needsReset', epoch, message: 'the shared directory could not be opened' });
    return;
  }
  mem = GuestMemory.fromMapped(m.regions);
  const at = epoch;
  const interrupt: VirtioInterrupt = {
    signalUsedQueue: (index) => {
      const fd = Atomics.load(irqfds, index);
      if (fd >= 0) {
        signalEventFd(fd); // MSI-X through KVM's irqfd, without the main thread
        service?.countIrqfd();
        publishStats();
      } else {
        post({ type: 'used', epoch: at, index });
      }
    },
    signalConfigChange: () => undefined, // virtio-fs has no configuration changes
    needsReset: (cause) => post({ type: 'needsReset', epoch: at, message: cause.message }),
  };
  try {
    const queues = m.queues.map((c) => (c ? queueFrom(c, mem!, m.features) : undefined));
    service.activate({ mem, queues, interrupt, features: m.features });
  } catch (e) {
    broken = true;
    post({ type: 'needsReset', epoch, message: e instanceof Error ? e.message : String(e) });
    return;
  }
  // Doorbells rung before DRIVER_OK were not served (§3.1.1: the driver may add buffers first).
  for (let i = 0; i < m.queues.length; i++) if (m.queues[i]) serve(i);
}

function watchDoorbells(fds: (number | undefined)[]): void {
  fds.forEach((fd, index) => {
    if (fd === undefined) return;
    const handle = koffi.node.poll(fd, { readable: true }, () => {
      // Reset the counter; one pass serves every write it counted.
      const writes = takeEventFd(fd);
      if (writes > 0n) service?.countDoorbell(Number(writes));
      serve(index);
    });
    doorbells.push({ fd, handle });
  });
}

async function close(seq: number): Promise<void> {
  for (const d of doorbells) {
    d.handle.stop();
    d.handle.close();
  }
  doorbells.length = 0;
  try {
    await service?.close();
  } finally {
    publishStats();
    service = undefined;
    dropActivation();
    ack(seq);
  }
}

port.on('message', (m: ToFsWorker) => {
  switch (m.type) {
    case 'open':
      open(m.options);
      return;
    case 'doorbells':
      watchDoorbells(m.fds);
      return;
    case 'activate':
      activate(m);
      return;
    case 'kick':
      if (m.epoch === epoch) serve(m.index);
      return;
    case 'reset':
      service?.reset();
      dropActivation();
      ack(m.seq);
      return;
    case 'allow':
    case 'revoke': {
      const al = service?.fs.allowlist;
      try {
        if (m.type === 'allow') al?.allow(m.paths);
        else al?.revoke(m.paths);
      } finally {
        ack(m.seq);
      }
      return;
    }
    case 'close':
      void close(m.seq);
      return;
  }
});
