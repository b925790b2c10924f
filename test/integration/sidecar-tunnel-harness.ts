/**
 * Shared pieces of the tunnel tests (not a test file itself): an app connection to an
 * outbound listener that can be written to and waited on, a local service whose first
 * byte picks what it does, and readers of the sidecar's tunnel metrics.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { adminGet, splitHostPort } from './sidecar-harness.js';

/** A plaintext app connection to an outbound (or any) listener. */
export class AppConn {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  ended = false;
  readonly closed: Promise<{ error: string | undefined }>;
  #waiters: (() => void)[] = [];
  #error: string | undefined;

  constructor(address: string) {
    const [host, port] = splitHostPort(address);
    this.socket = netConnect({ host, port, allowHalfOpen: true });
    this.socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.wake();
    });
    this.socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    this.socket.on('error', (e: NodeJS.ErrnoException) => (this.#error = e.code ?? e.message));
    this.closed = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.wake();
        resolve({ error: this.#error });
      }),
    );
  }

  private wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves once `pred` holds on what was received (or the connection closed). */
  async until(pred: (text: string) => boolean): Promise<string> {
    for (;;) {
      const text = this.received.toString('latin1');
      if (pred(text) || this.socket.destroyed) return text;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  text(): string {
    return this.received.toString('latin1');
  }
}

/**
 * The local service behind the tunnel. First byte from the caller:
 * `E` echo (answers `hello <name>\n`, then echoes; ends when the caller ends);
 * `S<n>\n` sends n bytes, ends its side, and records how many bytes the caller then sends;
 * `P<n>\n` pumps n bytes in 64 KiB writes, each only when the socket takes more (no
 * buffering of its own beyond one write), counted in `pump` — what left the service.
 */
export interface ModalService {
  readonly server: Server;
  readonly address: string;
  connections(): number;
  open(): number;
  /** Bytes the caller sent after an `S` service had ended its side, one entry per such connection. */
  readonly afterEnd: number[];
  /** The latest `P` connection: bytes handed to its socket so far, and whether it waits for 'drain'. */
  readonly pump: { written: number; waiting: boolean; done: boolean };
  close(): Promise<void>;
}

export async function startModalService(name: string): Promise<ModalService> {
  let count = 0;
  const sockets = new Set<Socket>();
  const afterEnd: number[] = [];
  const pump = { written: 0, waiting: false, done: false };
  const server = createServer({ allowHalfOpen: true }, (s) => {
    count++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.once('readable', function first() {
      const head = s.read(1) as Buffer | null;
      if (!head) {
        s.once('readable', first);
        return;
      }
      if (head.toString() === 'E') {
        s.write(`hello ${name}\n`);
        s.pipe(s);
        return;
      }
      const mode = head.toString();
      let line = '';
      const onData = (d: Buffer) => {
        line += d.toString('latin1');
        const nl = line.indexOf('\n');
        if (nl === -1) return;
        s.off('data', onData);
        const n = Number(line.slice(0, nl));
        if (mode === 'P') {
          Object.assign(pump, { written: 0, waiting: false, done: false });
          const chunk = Buffer.alloc(64 * 1024, 0x70);
          const more = () => {
            pump.waiting = false;
            while (pump.written < n) {
              const piece = chunk.subarray(0, Math.min(chunk.length, n - pump.written));
              pump.written += piece.length;
              if (!s.write(piece)) {
                pump.waiting = true;
                s.once('drain', more);
                return;
              }
            }
            pump.done = true;
            s.end();
          };
          more();
          return;
        }
        let got = line.length - nl - 1;
        s.end(Buffer.alloc(n, 0x61));
        s.on('data', (more: Buffer) => (got += more.length));
        s.once('end', () => afterEnd.push(got));
      };
      s.on('data', onData);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address() as { port: number };
  return {
    server,
    address: `127.0.0.1:${a.port}`,
    connections: () => count,
    open: () => sockets.size,
    afterEnd,
    pump,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A counter or gauge with labels from /metrics (0 when absent). */
export async function metric(admin: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const { body } = await adminGet(admin, '/metrics');
  for (const line of body.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map(
      (m[2] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => kv.split('=').map((x) => x.replace(/"/g, '')) as [string, string]),
    );
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return 0;
}
