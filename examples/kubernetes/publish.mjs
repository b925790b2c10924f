#!/usr/bin/env node
// Copies every active service's credential set into its Secret, and the CA's crl.pem into
// a ConfigMap, through the Kubernetes API with the pod's ServiceAccount (no kubectl in the
// image). Objects are patched, never created: the Role may patch exactly these names.
//
//   node publish.mjs             in the CronJob's pod
//   node publish.mjs --dry-run   anywhere: prints what it would patch, touches nothing
//
// Secret names: "svcca-" + the service name with each "/" replaced by "."
//   payment-service   -> svcca-payment-service
//   ns/prod/api       -> svcca-ns.prod.api
// A name whose result is not a valid Secret name (an "_", a segment ending in "-" or
// ".", more than 253 characters) or that collides with another service's is refused
// and named; the others are still published. Exit 0 all done, 2 some failed.
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';
/** A ConfigMap holds at most 1 MiB in all; leave room for the object's metadata. */
const MAX_CRL_BYTES = 1_000_000;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function secretNameFor(service) {
  const name = `svcca-${service.replaceAll('/', '.')}`;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) return undefined;
  return name;
}

function readSet(setDir) {
  // Resolve ..data once, so the three files come from one folder (never a torn pair).
  const folder = realpathSync(join(setDir, '..data'));
  const b64 = (f) => readFileSync(join(folder, f)).toString('base64');
  return { 'tls.crt': b64('tls.crt'), 'tls.key': b64('tls.key'), 'ca.crt': b64('ca.crt') };
}

function api(method, path, body) {
  const token = readFileSync(join(SA, 'token'), 'utf8');
  const ca = readFileSync(join(SA, 'ca.crt'));
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method,
        path,
        ca,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/merge-patch+json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (res) => {
        let text = '';
        res
          .setEncoding('utf8')
          .on('data', (c) => (text += c))
          .on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function patch(kind, name, data, dryRun) {
  const summary = `${kind}/${name} (${Object.keys(data).join(', ')})`;
  if (dryRun) {
    console.log(`would patch ${summary}`);
    return true;
  }
  const ns = readFileSync(join(SA, 'namespace'), 'utf8').trim();
  const res = await api('PATCH', `/api/v1/namespaces/${ns}/${kind === 'secret' ? 'secrets' : 'configmaps'}/${name}`, { data });
  if (res.status === 200) {
    console.log(`patched ${summary}`);
    return true;
  }
  const hint =
    res.status === 404
      ? `create it once: see README.md, "Bootstrap"`
      : res.status === 403
        ? `add ${name} to the Role's resourceNames in rotate.yaml`
        : res.text.slice(0, 200);
  console.error(`publish: ${kind}/${name}: HTTP ${res.status}; ${hint}`);
  return false;
}

async function main() {
  const dryRun = process.argv.includes('--dry-run');
  const records = JSON.parse(execFileSync('svcca', ['list', '--json'], { encoding: 'utf8' }));
  let ok = true;
  const seen = new Map();
  for (const r of records) {
    if (r.status !== 'active') continue;
    const name = secretNameFor(r.service);
    if (!name) {
      console.error(
        `publish: ${r.service}: "svcca-${r.service.replaceAll('/', '.')}" is not a valid Secret name; rename the service (no "_", segments ending in a letter or digit)`,
      );
      ok = false;
      continue;
    }
    if (seen.has(name)) {
      console.error(`publish: ${r.service} and ${seen.get(name)} both map to Secret ${name}; rename one of them`);
      ok = false;
      continue;
    }
    seen.set(name, r.service);
    try {
      ok = (await patch('secret', name, readSet(r.setDir), dryRun)) && ok;
    } catch (err) {
      console.error(`publish: ${r.service}: ${err.message}`);
      ok = false;
    }
  }
  const crlPath = join(process.env.SVCCA_DIR ?? './ca-data', 'crl.pem');
  const crl = readFileSync(crlPath, 'utf8');
  if (Buffer.byteLength(crl) > MAX_CRL_BYTES) {
    console.error(
      `publish: ${crlPath} is ${Buffer.byteLength(crl)} bytes, over what a ConfigMap holds (1 MiB); serve it from a volume instead (README.md, "Large CRLs")`,
    );
    ok = false;
  } else {
    ok = (await patch('configmap', process.env.CRL_CONFIGMAP ?? 'svcca-crl', { 'crl.pem': crl }, dryRun)) && ok;
  }
  return ok ? 0 : 2;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`publish: ${err.message}`);
    process.exit(2);
  },
);
