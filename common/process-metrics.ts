/** Process figures (RSS, CPU, fds, heap) for a prom-client registry, read only when scraped. */
import { readdirSync } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * The process's own figures, read when /metrics is scraped and at no other time.
 * prom-client's collectDefaultMetrics would do it too, but it also starts an event-loop
 * delay monitor that wakes the process 100 times a second: about 1 % of a core and 1,000
 * context switches every 10 s in an idle sidecar, beside every service.
 */
export function registerProcessMetrics(registers: Registry[], prefix: string): void {
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes', () => process.memoryUsage.rss());
  for (const mode of ['user', 'system'] as const) {
    new Counter({
      name: `${prefix}process_cpu_${mode}_seconds_total`,
      help: `${mode === 'user' ? 'User' : 'System'} CPU time spent, in seconds`,
      registers,
      collect() {
        this.reset();
        this.inc(process.cpuUsage()[mode] / 1e6);
      },
    });
  }
  gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch, in seconds', () => startSeconds);
  gauge('process_open_fds', 'Open file descriptors', () => {
    try {
      return readdirSync('/proc/self/fd').length;
    } catch {
      return -1;
    }
  });
  gauge('nodejs_heap_size_used_bytes', 'V8 heap in use, in bytes', () => process.memoryUsage().heapUsed);
  gauge(
    'nodejs_external_memory_bytes',
    'Memory of C++ objects bound to JavaScript objects (buffers among them), in bytes',
    () => process.memoryUsage().external,
  );
}
