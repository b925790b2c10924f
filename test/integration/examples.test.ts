/**
 * The deployment examples cannot be run here (no Docker engine, no cluster, no systemd as
 * PID 1), so this keeps them honest another way:
 *  - every YAML file under examples/ parses (and every YAML document embedded in a
 *    ConfigMap);
 *  - the paths and ports each file names agree with the sidecar config it mounts: a
 *    config path must fall inside a mount, an app must bind loopback on the port the
 *    sidecar forwards to, an outbound target must be another sidecar's inbound port with
 *    that sidecar's identity, probes and scrape annotations must hit the admin port, the
 *    Role must name every Secret the pods mount, …;
 *  - the files each sidecar config names are made by the real CLI in a temp directory
 *    (for docker-compose by the example's own ca-init.sh), the config's paths are rewritten
 *    to them through the mounts, and `svcca-sidecar --check --config` must accept it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { cleanEnv, makeCa, run, SIDECAR_BIN, SVCCA_BIN, tempDir, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = join(REPO, 'examples');
const TRUST_DOMAIN = 'example.org';

// biome-ignore lint/suspicious/noExplicitAny: a parsed Kubernetes/Compose manifest, walked by path (spec.template.spec.containers...) without a schema
type Obj = Record<string, any>;

interface SidecarConfigDoc {
  identity: { dir: string; crl?: string; renew?: { ca: string; before?: string } };
  policy?: string;
  inbound?: { listen: string; forward: string; mode?: string };
  outbound?: { listen: string; connect: string; serverId: string }[];
  admin?: { listen: string };
}

/** A container's view of the filesystem: mount target → host path, longest prefix wins. */
type Mounts = Map<string, string>;

function translate(mounts: Mounts, path: string, what: string): string {
  let best: string | undefined;
  for (const target of mounts.keys()) {
    if ((path === target || path.startsWith(`${target}/`)) && (!best || target.length > best.length)) best = target;
  }
  assert.ok(best, `${what}: ${path} is not inside any volume the container mounts (${[...mounts.keys()].join(', ')})`);
  return join(mounts.get(best)!, path.slice(best.length));
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function port(addr: string): number {
  const m = /:(\d+)$/.exec(addr);
  assert.ok(m, `${addr} has no port`);
  return Number(m[1]);
}

function host(addr: string): string {
  return addr.replace(/:\d+$/, '');
}

/** Directory with an `svcca` on PATH that runs the built CLI. */
function shimDir(root: string): string {
  const bin = join(root, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'svcca'), `#!/bin/sh\nexec "${process.execPath}" "${SVCCA_BIN}" "$@"\n`);
  writeFileSync(join(bin, 'svcca-sidecar'), `#!/bin/sh\nexec "${process.execPath}" "${SIDECAR_BIN}" "$@"\n`);
  chmodSync(join(bin, 'svcca'), 0o755);
  chmodSync(join(bin, 'svcca-sidecar'), 0o755);
  return bin;
}

/**
 * Rewrites the config's file paths through `mounts` into the temp dir, writes it there
 * and runs `svcca-sidecar --check` on it; the identity it reports must be `service`.
 */
function sidecarCheck(label: string, config: SidecarConfigDoc, mounts: Mounts, service: string, work: string): void {
  assert.ok(existsSync(SIDECAR_BIN), `${SIDECAR_BIN} is missing: run make build (svcca-sidecar must exist for this test)`);
  const rewritten: SidecarConfigDoc = structuredClone(config);
  rewritten.identity.dir = translate(mounts, config.identity.dir, `${label} identity.dir`);
  for (const f of ['tls.crt', 'tls.key', 'ca.crt']) {
    assert.ok(existsSync(join(rewritten.identity.dir, f)), `${label}: identity.dir ${config.identity.dir} would not hold ${f}`);
  }
  assert.ok(
    existsSync(join(rewritten.identity.dir, '..data')),
    `${label}: identity.dir ${config.identity.dir} is not a ..data credential set`,
  );
  // An https:// CRL (svcca serve) is fetched at run time, not a file in a volume.
  if (config.identity.crl && !config.identity.crl.startsWith('https://')) {
    rewritten.identity.crl = translate(mounts, config.identity.crl, `${label} identity.crl`);
    assert.ok(existsSync(rewritten.identity.crl), `${label}: identity.crl ${config.identity.crl} would not exist`);
  }
  if (config.policy) {
    rewritten.policy = translate(mounts, config.policy, `${label} policy`);
    assert.ok(existsSync(rewritten.policy), `${label}: policy ${config.policy} would not exist`);
  }
  const file = join(work, `${label.replace(/[^a-z0-9]+/gi, '-')}.yaml`);
  writeFileSync(file, stringify(rewritten));
  const res = run(process.execPath, [SIDECAR_BIN, '--check', '--config', file], { env: cleanEnv() });
  assert.equal(res.status, 0, `${label}: svcca-sidecar --check refused the config:\n${res.stdout}${res.stderr}`);
  assert.match(res.stdout, /configuration is valid/, `${label}: --check did not say the config is valid:\n${res.stdout}`);
  assert.match(
    res.stdout,
    new RegExp(`identity spiffe://${TRUST_DOMAIN}/${service.replace(/[.]/g, '\\.')},`),
    `${label}: expected the identity of ${service}:\n${res.stdout}`,
  );
  assert.doesNotMatch(res.stderr, /warning: policy:/, `${label}: --check warned about the policy:\n${res.stderr}`);
}

function policyAllows(policyFile: string, from: string, to: string): boolean {
  const res = run(process.execPath, [SVCCA_BIN, 'policy', 'check', from, to, '--policy', policyFile], { env: cleanEnv() });
  assert.ok(res.status === 0 || res.status === 3, `svcca policy check failed: ${res.stderr}`);
  return res.status === 0;
}

test('every YAML file under examples/ parses, and so does every YAML document inside a ConfigMap', () => {
  const files = walk(EXAMPLES).filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.length >= 8, `expected the example YAML files, found ${files.length}`);
  for (const f of files) {
    const docs = parseAllDocuments(readFileSync(f, 'utf8'));
    const list = Array.isArray(docs) ? docs : [docs];
    for (const d of list) assert.deepEqual(d.errors.map(String), [], `${relative(REPO, f)} does not parse`);
    for (const d of list) {
      const obj = d.toJS() as Obj | null;
      if (obj?.kind === 'ConfigMap') {
        for (const [k, v] of Object.entries(obj.data ?? {})) {
          if (k.endsWith('.yaml'))
            assert.doesNotThrow(() => parse(v as string), `${relative(REPO, f)}: ConfigMap ${obj.metadata?.name} ${k}`);
        }
      }
    }
  }
});

describe('examples/docker-compose', () => {
  const dir = join(EXAMPLES, 'docker-compose');
  const compose = parse(readFileSync(join(dir, 'compose.yaml'), 'utf8')) as Obj;
  const services = compose.services as Record<string, Obj>;
  let work: string;
  let sets: string;

  /** Volumes of a compose service: target → host path (bind: the example file; named: temp). */
  function mountsOf(name: string): Mounts {
    const m: Mounts = new Map();
    for (const v of services[name]!.volumes ?? []) {
      if (typeof v === 'string') {
        const [src, target] = v.split(':');
        if (src!.startsWith('.')) m.set(target!, join(dir, src!));
        else if (src === 'identities') m.set(target!, sets);
        else m.set(target!, join(work, 'volumes', src!));
      } else {
        assert.equal(v.type, 'volume', `${name}: unexpected mount type ${v.type}`);
        const base = v.source === 'identities' ? sets : join(work, 'volumes', v.source);
        m.set(v.target, v.volume?.subpath ? join(base, v.volume.subpath) : base);
      }
    }
    return m;
  }

  const sidecars = Object.entries(services).filter(([, s]) => JSON.stringify(s.command ?? '').includes('svcca-sidecar'));

  function configOf(name: string): SidecarConfigDoc {
    const cmd = services[name]!.command as string[];
    const path = cmd[cmd.indexOf('--config') + 1]!;
    const file = translate(mountsOf(name), path, `${name} --config`);
    assert.ok(existsSync(file), `${name}: --config ${path} is mounted from ${relative(REPO, file)}, which does not exist`);
    return parse(readFileSync(file, 'utf8')) as SidecarConfigDoc;
  }

  before(() => {
    work = tempDir('svcca-compose-');
    sets = join(work, 'volumes', 'identities');
    mkdirSync(sets, { recursive: true });
  });
  after(() => undefined);

  test('ca-init.sh, run with the real CLI, makes the CA, a set per service and the published crl.pem', () => {
    const init = services['ca-init']!;
    const env = init.environment as Record<string, string>;
    writeFileSync(join(work, 'passphrase'), `${TEST_PASSPHRASE}\n`, { mode: 0o600 });
    const res = run('sh', [join(dir, 'scripts', 'ca-init.sh')], {
      env: cleanEnv({
        PATH: `${shimDir(work)}:${process.env.PATH}`,
        TRUST_DOMAIN: env.TRUST_DOMAIN,
        SERVICES: env.SERVICES,
        PASSPHRASE_FILE: join(work, 'passphrase'),
        SVCCA_DIR: join(work, 'volumes', 'ca-data'),
        SVCCA_SETS: sets,
      }),
      timeoutMs: 120_000,
    });
    assert.equal(res.status, 0, `ca-init.sh failed:\n${res.stdout}${res.stderr}`);
    for (const s of env.SERVICES!.split(/\s+/)) assert.ok(existsSync(join(sets, s, '..data', 'tls.key')), `no set for ${s}`);
    assert.ok(existsSync(join(sets, 'crl', 'crl.pem')), 'crl/crl.pem was not published');
    // Run again: it must be idempotent (a restarted stack runs it every time).
    const again = run('sh', [join(dir, 'scripts', 'ca-init.sh')], {
      env: cleanEnv({
        PATH: `${shimDir(work)}:${process.env.PATH}`,
        TRUST_DOMAIN: env.TRUST_DOMAIN,
        SERVICES: env.SERVICES,
        PASSPHRASE_FILE: join(work, 'passphrase'),
        SVCCA_DIR: join(work, 'volumes', 'ca-data'),
        SVCCA_SETS: sets,
      }),
      timeoutMs: 120_000,
    });
    assert.equal(again.status, 0, `ca-init.sh failed the second time:\n${again.stdout}${again.stderr}`);
    // The CA-side containers mount the same volumes at the paths the script writes to.
    for (const name of ['ca-init', 'rotate']) {
      const m = mountsOf(name);
      const e = services[name]!.environment as Record<string, string>;
      assert.equal(m.get(e.SVCCA_SETS ?? '/var/lib/svcca/sets'), sets, `${name} must mount identities at SVCCA_SETS`);
      assert.ok(m.has('/var/lib/svcca/ca-data'), `${name} must mount ca-data at /var/lib/svcca/ca-data (the image's SVCCA_DIR)`);
      assert.ok((services[name]!.secrets ?? []).includes('ca-passphrase'), `${name} needs the passphrase secret`);
      assert.equal(e.PASSPHRASE_FILE, '/run/secrets/ca-passphrase');
      const script = (services[name]!.command as string[]).find((a) => a.startsWith('/scripts/'))!;
      assert.ok(existsSync(translate(m, script, `${name} command`)), `${name}: ${script} does not exist`);
    }
    assert.ok(compose.secrets?.['ca-passphrase'], 'secrets.ca-passphrase is not declared');
  });

  test("each sidecar shares its app's network namespace; the app binds loopback on the forwarded port; ports and identities line up", () => {
    assert.equal(sidecars.length, 2);
    const initServices = ((services['ca-init']!.environment as Obj).SERVICES as string).split(/\s+/);
    const byApp = new Map<string, { sidecar: string; config: SidecarConfigDoc; service: string }>();
    for (const [name, s] of sidecars) {
      const config = configOf(name);
      const app = /^service:(.+)$/.exec(s.network_mode ?? '')?.[1];
      assert.ok(app && services[app], `${name}: network_mode must be service:<app>`);
      const identityMount = (s.volumes as Obj[]).find((v) => typeof v === 'object' && v.target === config.identity.dir);
      assert.ok(identityMount, `${name}: identity.dir ${config.identity.dir} must be a volume mount of its own set`);
      assert.equal(identityMount.read_only, true, `${name}: the identity mount must be read-only`);
      const service = identityMount.volume.subpath as string;
      assert.ok(initServices.includes(service), `${name}: ca-init does not issue ${service}`);
      byApp.set(app, { sidecar: name, config, service });
      const appEnv = services[app]!.environment as Obj;
      assert.ok(config.inbound, `${name} has no inbound`);
      assert.equal(appEnv.LISTEN, config.inbound.forward, `${app} must listen where ${name} forwards`);
      assert.equal(host(appEnv.LISTEN), '127.0.0.1', `${app} must bind loopback only`);
      assert.equal(appEnv.SERVICE, service);
      for (const p of services[app]!.ports ?? []) {
        assert.equal(
          Number(String(p).split(':').pop()),
          port(config.inbound.listen),
          `${app} publishes ${p}, which is not the sidecar's inbound port`,
        );
      }
      assert.ok(config.admin, `${name}: no admin listener`);
      const hc = JSON.stringify(s.healthcheck?.test ?? '');
      assert.ok(hc.includes(`${config.admin.listen}/readyz`), `${name}: the healthcheck must ask ${config.admin.listen}/readyz`);
      if (appEnv.UPSTREAM) {
        assert.ok(
          config.outbound?.some((o) => port(o.listen) === port(new URL(appEnv.UPSTREAM).host) && host(o.listen) === '127.0.0.1'),
          `${app}: UPSTREAM ${appEnv.UPSTREAM} is not one of ${name}'s outbound listeners`,
        );
      }
    }
    for (const [app, { sidecar, config, service }] of byApp) {
      for (const o of config.outbound ?? []) {
        const target = byApp.get(host(o.connect));
        assert.ok(target, `${sidecar}: outbound connect ${o.connect} is not a service with a sidecar`);
        assert.equal(
          port(o.connect),
          port(target.config.inbound!.listen),
          `${sidecar}: ${o.connect} is not ${target.sidecar}'s inbound port`,
        );
        assert.equal(o.serverId, `spiffe://${TRUST_DOMAIN}/${target.service}`);
        assert.ok(
          policyAllows(join(dir, 'policy.yaml'), service, target.service),
          `policy.yaml does not let ${service} call ${target.service}`,
        );
      }
      void app;
    }
  });

  for (const [name] of sidecars) {
    test(`svcca-sidecar --check accepts ${name}'s config with the files ca-init.sh made`, () => {
      const config = configOf(name);
      const service = (services[name]!.volumes as Obj[]).find((v) => typeof v === 'object' && v.target === config.identity.dir)!.volume
        .subpath as string;
      sidecarCheck(`compose ${name}`, config, mountsOf(name), service, work);
    });
  }
});

describe('examples/kubernetes', () => {
  const dir = join(EXAMPLES, 'kubernetes');
  const objects: Obj[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      const o = d.toJS();
      if (o) objects.push(o);
    }
  }
  const readme = readFileSync(join(dir, 'README.md'), 'utf8');
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name);
  const deployments = objects.filter((o) => o.kind === 'Deployment');
  const role = find('Role', 'svcca-rotate')!;
  const cron = find('CronJob', 'svcca-rotate')!;
  let ca: TestCa;
  let work: string;

  before(() => {
    ca = makeCa({ trustDomain: TRUST_DOMAIN });
    work = join(ca.root, 'k8s');
    mkdirSync(work);
  });
  after(() => ca?.cleanup());

  /** ConfigMaps and Secrets that exist: defined here, or created in the README's bootstrap. */
  function defined(kind: 'ConfigMap' | 'Secret', name: string): boolean {
    if (find(kind, name)) return true;
    const verb = kind === 'ConfigMap' ? 'configmap' : 'secret generic';
    return (
      readme.includes(`create ${verb} ${name} `) ||
      (kind === 'Secret' && name.startsWith('svcca-') && readme.includes('create secret generic "svcca-$s"'))
    );
  }

  interface Sidecar {
    deployment: Obj;
    container: Obj;
    app: Obj;
    config: SidecarConfigDoc;
    service: string;
    mounts: Mounts;
  }

  function sidecarOf(d: Obj): Sidecar {
    const pod = d.spec.template.spec;
    const container = (pod.containers as Obj[]).find((c) => (c.args ?? c.command ?? []).includes('svcca-sidecar'));
    assert.ok(container, `${d.metadata.name}: no svcca-sidecar container`);
    const app = (pod.containers as Obj[]).find((c) => c !== container)!;
    const volumes = new Map((pod.volumes as Obj[]).map((v) => [v.name, v]));
    const args = container.args as string[];
    const configPath = args[args.indexOf('--config') + 1]!;
    // First pass: find the config through its ConfigMap.
    let config: SidecarConfigDoc | undefined;
    for (const vm of container.volumeMounts as Obj[]) {
      assert.equal(vm.subPath, undefined, `${d.metadata.name}: ${vm.mountPath} uses subPath, which never receives updates`);
      const v = volumes.get(vm.name);
      assert.ok(v, `${d.metadata.name}: volumeMount ${vm.name} has no volume`);
      if (configPath.startsWith(`${vm.mountPath}/`) && v.configMap) {
        const cm = find('ConfigMap', v.configMap.name);
        assert.ok(cm, `${d.metadata.name}: ConfigMap ${v.configMap.name} is not defined`);
        const text = cm.data?.[posix.basename(configPath)];
        assert.ok(text, `${d.metadata.name}: ConfigMap ${v.configMap.name} has no key ${posix.basename(configPath)}`);
        config = parse(text) as SidecarConfigDoc;
      }
    }
    assert.ok(config, `${d.metadata.name}: --config ${configPath} is not in a mounted ConfigMap`);
    const identityMount = (container.volumeMounts as Obj[]).find((vm) => vm.mountPath === config.identity.dir);
    assert.ok(identityMount, `${d.metadata.name}: identity.dir ${config.identity.dir} is not a volume mount`);
    const secretName = volumes.get(identityMount.name)?.secret?.secretName as string;
    assert.ok(secretName?.startsWith('svcca-'), `${d.metadata.name}: identity.dir must be a Secret named svcca-<service>`);
    const service = secretName.slice('svcca-'.length).replaceAll('.', '/');
    // Second pass: where each mount's files come from, made by the real CLI.
    const mounts: Mounts = new Map();
    for (const vm of container.volumeMounts as Obj[]) {
      const v = volumes.get(vm.name)!;
      const hostDir = join(work, d.metadata.name, vm.name);
      if (v.secret) {
        assert.ok(defined('Secret', v.secret.secretName), `Secret ${v.secret.secretName} is neither defined nor created in README.md`);
        ca.svcca(['issue', service, '--out', hostDir]);
        mounts.set(vm.mountPath, hostDir);
      } else if (v.configMap) {
        const name = v.configMap.name as string;
        assert.ok(defined('ConfigMap', name), `ConfigMap ${name} is neither defined nor created in README.md`);
        mkdirSync(hostDir, { recursive: true });
        const cm = find('ConfigMap', name);
        if (cm) for (const [k, text] of Object.entries(cm.data ?? {})) writeFileSync(join(hostDir, k), text as string);
        else if (name === cron.spec.jobTemplate.spec.template.spec.containers[0].env.find((e: Obj) => e.name === 'CRL_CONFIGMAP')?.value)
          copyFileSync(join(ca.dir, 'crl.pem'), join(hostDir, 'crl.pem'));
        mounts.set(vm.mountPath, hostDir);
      }
    }
    return { deployment: d, container, app, config, service, mounts };
  }

  test('each Deployment runs the sidecar as a second container, and its mounts, ports, probes and annotations agree with its config', () => {
    assert.ok(deployments.length >= 2);
    const sidecars = deployments.map(sidecarOf);
    const secretNames = (role.rules as Obj[]).find((r) => r.resources.includes('secrets'))!.resourceNames as string[];
    const cmNames = (role.rules as Obj[]).find((r) => r.resources.includes('configmaps'))!.resourceNames as string[];
    for (const s of sidecars) {
      const name = s.deployment.metadata.name;
      const { config, container, app } = s;
      assert.equal(name, s.service, `Deployment ${name} mounts the set of ${s.service}`);
      assert.ok(
        secretNames.includes(`svcca-${s.service.replaceAll('/', '.')}`),
        `the Role does not let the CronJob patch svcca-${s.service}`,
      );
      const crlMount = (container.volumeMounts as Obj[]).find((vm) => config.identity.crl?.startsWith(`${vm.mountPath}/`));
      const crlCm = (s.deployment.spec.template.spec.volumes as Obj[]).find((v) => v.name === crlMount?.name)?.configMap?.name;
      assert.ok(crlCm && cmNames.includes(crlCm), `${name}: crl.pem must come from the ConfigMap the CronJob patches`);
      const listen = (app.env as Obj[]).find((e) => e.name === 'LISTEN')?.value;
      assert.equal(listen, config.inbound!.forward, `${name}: the app must listen where the sidecar forwards`);
      assert.equal(host(listen), '127.0.0.1', `${name}: the app must bind loopback only`);
      assert.equal(app.ports, undefined, `${name}: the app container must not expose ports; the sidecar is the way in`);
      const ports = new Map((container.ports as Obj[]).map((p) => [p.name, p.containerPort]));
      assert.equal(ports.get('mtls'), port(config.inbound!.listen));
      assert.equal(ports.get('admin'), port(config.admin!.listen));
      assert.equal(host(config.admin!.listen), '0.0.0.0', `${name}: probes reach the admin listener on the pod IP`);
      assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: port(config.admin!.listen) });
      assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: port(config.admin!.listen) });
      const ann = s.deployment.spec.template.metadata.annotations;
      assert.equal(ann['prometheus.io/scrape'], 'true');
      assert.equal(Number(ann['prometheus.io/port']), port(config.admin!.listen));
      assert.equal(ann['prometheus.io/path'], '/metrics');
      const svc = find('Service', name);
      assert.ok(svc, `no Service ${name}`);
      assert.equal(svc.spec.ports[0].targetPort, 'mtls');
    }
    for (const s of sidecars) {
      for (const o of s.config.outbound ?? []) {
        const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(host(o.connect));
        assert.ok(m, `${s.service}: outbound connect ${o.connect} is not a Service DNS name`);
        const svc = find('Service', m[1]!);
        assert.ok(svc && svc.metadata.namespace === m[2], `${s.service}: no Service ${m[1]} in ${m[2]}`);
        assert.equal(svc.spec.ports[0].port, port(o.connect));
        const target = sidecars.find((t) => t.deployment.metadata.name === m[1]);
        assert.ok(target);
        assert.equal(o.serverId, `spiffe://${TRUST_DOMAIN}/${target.service}`);
        const policyFile = join(work, 'policy.yaml');
        writeFileSync(policyFile, find('ConfigMap', 'svcca-policy')!.data['policy.yaml']);
        assert.ok(policyAllows(policyFile, s.service, target.service), `the policy does not let ${s.service} call ${target.service}`);
      }
    }
  });

  test("svcca-sidecar --check accepts each Deployment's sidecar config with the mounted files made by the real CLI", () => {
    for (const d of deployments) {
      const s = sidecarOf(d);
      sidecarCheck(`k8s ${d.metadata.name}`, s.config, s.mounts, s.service, work);
    }
  });

  test('the CronJob: Forbid, a ReadWriteOnce CA volume at SVCCA_DIR, the root key nowhere, a Role limited by resourceNames', () => {
    assert.equal(cron.spec.concurrencyPolicy, 'Forbid');
    const pod = cron.spec.jobTemplate.spec.template.spec;
    assert.equal(pod.serviceAccountName, 'svcca-rotate');
    const c = pod.containers[0];
    const env = new Map((c.env as Obj[]).map((e) => [e.name, e.value]));
    const caMount = (c.volumeMounts as Obj[]).find((vm) => vm.mountPath === env.get('SVCCA_DIR'));
    assert.ok(caMount, 'the CA volume must be mounted at SVCCA_DIR');
    const claim = (pod.volumes as Obj[]).find((v) => v.name === caMount.name)?.persistentVolumeClaim?.claimName;
    assert.deepEqual(find('PersistentVolumeClaim', claim)?.spec.accessModes, ['ReadWriteOnce']);
    const scripts = (pod.volumes as Obj[]).find((v) => v.configMap)?.configMap.name;
    assert.ok(readme.includes(`create configmap ${scripts} --from-file=rotate.sh --from-file=publish.mjs`));
    assert.ok(JSON.stringify(c.command).includes('rotate.sh'));
    for (const rule of role.rules as Obj[]) {
      assert.ok(rule.resourceNames?.length > 0, 'every Role rule must name its objects');
      for (const v of rule.verbs) assert.ok(['get', 'patch'].includes(v), `the Role must not grant ${v}`);
    }
    assert.ok(!objects.some((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding'), 'no cluster-wide permissions');
    assert.ok(!JSON.stringify(objects).includes('root.key'), 'nothing in the cluster may refer to root.key');
    assert.equal(find('RoleBinding', 'svcca-rotate')?.roleRef.name, 'svcca-rotate');
  });

  test('publish.mjs --dry-run maps service names to the Secret names the Deployments mount, and refuses unmappable ones', () => {
    const local = makeCa({ trustDomain: TRUST_DOMAIN });
    try {
      for (const s of ['order-service', 'payment-service', 'ns/prod/api']) local.issue(s);
      const env = cleanEnv({ PATH: `${shimDir(local.root)}:${process.env.PATH}`, SVCCA_DIR: local.dir, CRL_CONFIGMAP: 'svcca-crl' });
      const ok = run(process.execPath, [join(dir, 'publish.mjs'), '--dry-run'], { env });
      assert.equal(ok.status, 0, ok.stderr);
      for (const d of deployments) {
        const secret = (d.spec.template.spec.volumes as Obj[]).find((v) => v.secret)!.secret.secretName;
        assert.match(ok.stdout, new RegExp(`would patch secret/${secret} \\(tls\\.crt, tls\\.key, ca\\.crt\\)`));
      }
      assert.match(ok.stdout, /would patch secret\/svcca-ns\.prod\.api /);
      assert.match(ok.stdout, /would patch configmap\/svcca-crl \(crl\.pem\)/);
      local.issue('bad_name');
      const bad = run(process.execPath, [join(dir, 'publish.mjs'), '--dry-run'], { env });
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /bad_name: "svcca-bad_name" is not a valid Secret name/);
      assert.match(bad.stdout, /would patch secret\/svcca-order-service /, 'the other services are still published');
    } finally {
      local.cleanup();
    }
  });
});

describe('examples/systemd', () => {
  const dir = join(EXAMPLES, 'systemd');
  const unit = (f: string) => readFileSync(join(dir, f), 'utf8');
  const directive = (text: string, key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
  const sidecarUnit = unit('svcca-sidecar@.service');
  const rotateUnit = unit('svcca-rotate.service');
  const instances = readdirSync(join(dir, 'etc', 'svcca'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
  let ca: TestCa;
  let work: string;

  before(() => {
    ca = makeCa({ trustDomain: TRUST_DOMAIN });
    work = join(ca.root, 'systemd');
    mkdirSync(join(work, 'sets'), { recursive: true });
    for (const i of instances) ca.svcca(['issue', i, '--out', join(work, 'sets', i)]);
    copyFileSync(join(ca.dir, 'crl.pem'), join(work, 'sets', 'crl.pem'));
  });
  after(() => ca?.cleanup());

  const configOf = (i: string) => parse(readFileSync(join(dir, 'etc', 'svcca', i, 'sidecar.yaml'), 'utf8')) as SidecarConfigDoc;

  test('the units: a templated sidecar, a rotation service with its timer, hardening, the passphrase as a credential', () => {
    const exec = directive(sidecarUnit, 'ExecStart')[0]!;
    assert.match(exec, /svcca-sidecar --config \/etc\/svcca\/%i\/sidecar\.yaml$/);
    for (const [text, name] of [
      [sidecarUnit, 'sidecar'],
      [rotateUnit, 'rotate'],
    ] as const) {
      for (const key of ['NoNewPrivileges', 'ProtectSystem', 'User'])
        assert.ok(directive(text, key).length > 0, `${name}: ${key}= missing`);
      assert.equal(directive(text, 'ProtectSystem')[0], 'strict');
      assert.equal(directive(text, 'User')[0], 'svcca', `${name}: a dedicated user`);
    }
    assert.deepEqual(directive(rotateUnit, 'LoadCredential'), ['ca-passphrase:/etc/svcca/credstore/ca-passphrase']);
    assert.match(directive(rotateUnit, 'ExecStart')[0]!, /svcca rotate --passphrase-file %d\/ca-passphrase$/);
    assert.ok(!/PASSPHRASE/.test(directive(rotateUnit, 'Environment').join(' ')), 'no passphrase in the environment');
    assert.match(unit('svcca-rotate.timer'), /^OnCalendar=\*:0\/15$/m);
    assert.ok(directive(sidecarUnit, 'InaccessiblePaths').includes('/var/lib/svcca/ca-data'), 'the sidecars must not see the CA directory');
  });

  test('svcca-renew@ renews one set through svcca serve from a timer; svcca-serve runs the CA server', () => {
    const renew = unit('svcca-renew@.service');
    assert.match(directive(renew, 'ExecStart')[0]!, /svcca renew --ca \$\{SVCCA_CA\} --dir \/var\/lib\/svcca\/sets\/%i$/);
    assert.deepEqual(directive(renew, 'ReadWritePaths'), ['/var/lib/svcca/sets/%i'], 'it writes only the set it renews');
    assert.ok(
      !/passphrase/i.test(
        renew
          .split('\n')
          .filter((l) => !l.startsWith('#'))
          .join('\n'),
      ),
      'renewal needs no CA passphrase',
    );
    assert.match(unit('svcca-renew@.timer'), /^OnCalendar=\*:0\/15$/m);
    const serve = unit('svcca-serve.service');
    assert.match(
      directive(serve, 'ExecStart')[0]!,
      /svcca serve --listen \S+:9443 --admin 127\.0\.0\.1:\d+ --passphrase-file %d\/ca-passphrase$/,
    );
    assert.equal(directive(serve, 'User')[0], 'svcca');
  });

  test('each instance config names files the units make reachable, on ports that do not clash, with outbound targets that exist', () => {
    assert.ok(instances.length >= 2);
    const readOnly = directive(sidecarUnit, 'ReadOnlyPaths').join(' ').split(/\s+/);
    const published = /mv -f \S+ (\S+)'$/.exec(directive(rotateUnit, 'ExecStopPost')[0]!)?.[1];
    const listens = new Map<string, string>();
    for (const i of instances) {
      const c = configOf(i);
      assert.equal(c.identity.dir, `/var/lib/svcca/sets/${i}`);
      assert.equal(c.identity.crl, published, `${i}: identity.crl must be where svcca-rotate.service publishes crl.pem`);
      for (const p of [c.identity.dir, c.identity.crl!, c.policy!])
        assert.ok(
          readOnly.some((r) => p.startsWith(`${r}/`)),
          `${i}: ${p} is not under ReadOnlyPaths`,
        );
      assert.ok(
        c.inbound!.forward.startsWith('127.0.0.1:') || c.inbound!.forward.startsWith('unix:/'),
        `${i}: forward to loopback or a unix socket only`,
      );
      for (const l of [c.inbound?.listen, c.admin?.listen, ...(c.outbound ?? []).map((o) => o.listen)]) {
        if (!l) continue;
        assert.ok(!listens.has(`:${port(l)}`), `${i}: port ${port(l)} is also used by ${listens.get(`:${port(l)}`)} on the same host`);
        listens.set(`:${port(l)}`, i);
      }
    }
    for (const i of instances) {
      for (const o of configOf(i).outbound ?? []) {
        const target = instances.find((t) => configOf(t).inbound && port(configOf(t).inbound!.listen) === port(o.connect));
        assert.ok(target, `${i}: outbound ${o.connect} matches no instance's inbound port`);
        assert.equal(o.serverId, `spiffe://${TRUST_DOMAIN}/${target}`);
        assert.ok(policyAllows(join(dir, 'etc', 'svcca', 'policy.yaml'), i, target));
      }
    }
  });

  for (const i of instances) {
    test(`svcca-sidecar --check accepts the ${i} instance's config`, () => {
      const mounts: Mounts = new Map([
        ['/var/lib/svcca/sets', join(work, 'sets')],
        ['/etc/svcca', join(dir, 'etc', 'svcca')],
      ]);
      sidecarCheck(`systemd ${i}`, configOf(i), mounts, i, work);
    });
  }

  test('systemd-analyze verify finds nothing wrong with the units', (t) => {
    const which = run('sh', ['-c', 'command -v systemd-analyze']);
    if (which.status !== 0) {
      t.skip('systemd-analyze is not installed here');
      return;
    }
    const units = join(work, 'units');
    mkdirSync(units, { recursive: true });
    const bin = shimDir(work);
    const fix = (text: string) => text.replaceAll('/usr/local/bin/', `${bin}/`);
    writeFileSync(join(units, 'svcca-sidecar@order-service.service'), fix(sidecarUnit));
    writeFileSync(join(units, 'svcca-rotate.service'), fix(rotateUnit));
    writeFileSync(join(units, 'svcca-rotate.timer'), unit('svcca-rotate.timer'));
    writeFileSync(join(units, 'svcca-renew@payment-service.service'), fix(unit('svcca-renew@.service')));
    writeFileSync(join(units, 'svcca-renew@payment-service.timer'), unit('svcca-renew@.timer'));
    writeFileSync(join(units, 'svcca-serve.service'), fix(unit('svcca-serve.service')));
    const names = [
      'svcca-sidecar@order-service.service',
      'svcca-rotate.service',
      'svcca-rotate.timer',
      'svcca-renew@payment-service.service',
      'svcca-renew@payment-service.timer',
      'svcca-serve.service',
    ];
    const res = run('systemd-analyze', ['verify', '--man=no', ...names.map((f) => join(units, f))]);
    const complaints = `${res.stdout}${res.stderr}`
      .split('\n')
      .filter((l) => l.trim() && !/Failed to .*(bus|connect)|not running|System has not been booted/i.test(l));
    assert.deepEqual(complaints, [], `systemd-analyze verify:\n${res.stdout}${res.stderr}`);
  });
});

describe('examples/kubernetes/serve', () => {
  const dir = join(EXAMPLES, 'kubernetes', 'serve');
  const objects: Obj[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      const o = d.toJS();
      if (o) objects.push(o);
    }
  }
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name);
  let ca: TestCa;
  before(() => (ca = makeCa({ trustDomain: TRUST_DOMAIN })));
  after(() => ca?.cleanup());

  test('the sidecar renews through and fetches its CRL from the svcca-ca Service; the init container bootstraps into the volume it reads', () => {
    const caService = find('Service', 'svcca-ca')!;
    const serve = find('Deployment', 'svcca-ca')!.spec.template.spec.containers[0];
    const listen = serve.args[serve.args.indexOf('--listen') + 1] as string;
    const httpsPort = caService.spec.ports.find((p: Obj) => p.name === 'https');
    assert.equal(serve.ports.find((p: Obj) => p.name === httpsPort.targetPort).containerPort, port(listen));
    assert.equal(serve.readinessProbe.httpGet.port, port(serve.args[serve.args.indexOf('--admin') + 1]));
    const caUrl = `https://svcca-ca.${caService.metadata.namespace}.svc.cluster.local:${httpsPort.port}`;
    const config = parse(find('ConfigMap', 'svcca-sidecar-payment-service')!.data['sidecar.yaml']) as SidecarConfigDoc;
    assert.equal(config.identity.renew?.ca, caUrl);
    assert.equal(config.identity.crl, `${caUrl}/v1/crl.pem`);
    const pod = find('Deployment', 'payment-service')!.spec.template.spec;
    const init = pod.initContainers[0];
    const script = init.args.join(' ') as string;
    assert.match(script, new RegExp(`svcca bootstrap --ca ${caUrl.replace(/\./g, '\\.')}`));
    assert.match(script, new RegExp(`--out ${config.identity.dir}`));
    const sidecar = pod.containers.find((c: Obj) => c.name === 'svcca-sidecar');
    const mountOf = (c: Obj, path: string) => c.volumeMounts.find((m: Obj) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
    const initMount = mountOf(init, config.identity.dir);
    const sidecarMount = mountOf(sidecar, config.identity.dir);
    assert.equal(initMount.name, sidecarMount.name);
    assert.ok(!sidecarMount.readOnly, 'the sidecar renews the set in place');
    assert.ok(pod.volumes.find((v: Obj) => v.name === initMount.name).emptyDir, 'the identity lives in an emptyDir');
    assert.ok(!objects.some((o) => o.kind === 'CronJob'), 'no CronJob');
    const tokenFile = /--token-file (\S+)/.exec(script)![1]!;
    const tokenVolume = pod.volumes.find((v: Obj) => v.name === mountOf(init, tokenFile).name);
    assert.equal(tokenVolume.secret.secretName, 'svcca-token-payment-service');
    assert.match(readFileSync(join(dir, 'README.md'), 'utf8'), /create secret generic svcca-token-payment-service/);
  });

  test('svcca-sidecar --check accepts the sidecar config', () => {
    const work = join(ca.root, 'k8s-serve');
    mkdirSync(work);
    ca.svcca(['issue', 'payment-service', '--out', join(work, 'identity')]);
    const config = parse(find('ConfigMap', 'svcca-sidecar-payment-service')!.data['sidecar.yaml']) as SidecarConfigDoc;
    const mounts: Mounts = new Map([['/var/run/svcca/identity', join(work, 'identity')]]);
    const policyDir = join(work, 'policy');
    mkdirSync(policyDir);
    const policyMap = parseAllDocuments(readFileSync(join(EXAMPLES, 'kubernetes', 'policy.yaml'), 'utf8'))
      .map((d) => d.toJS() as Obj)
      .find((o) => o?.kind === 'ConfigMap')!;
    writeFileSync(join(policyDir, 'policy.yaml'), policyMap.data['policy.yaml']);
    mounts.set('/etc/svcca/policy', policyDir);
    sidecarCheck('kubernetes/serve payment-service', config, mounts, 'payment-service', work);
  });
});

/** The flags `svcca serve --help` lists, to check an example's serve command against. */
function serveFlags(): string[] {
  const help = run(process.execPath, [SVCCA_BIN, 'serve', '--help']);
  assert.equal(help.status, 0, help.stderr);
  return [...help.stdout.matchAll(/(--[a-z-]+)/g)].map((m) => m[1]!);
}

describe('examples/postgres: two svcca serve replicas', () => {
  const dir = join(EXAMPLES, 'postgres');
  const compose = parse(readFileSync(join(dir, 'compose.yaml'), 'utf8'), { merge: true }) as Obj;
  const services = compose.services as Record<string, Obj>;
  const replicas = Object.entries(services).filter(([, s]) => Array.isArray(s.command) && s.command[1] === 'serve');

  test('two replicas, each named, behind one name, on the ledger and secrets ca-init set up', () => {
    assert.equal(replicas.length, 2);
    const flags = serveFlags();
    const names = new Set<string>();
    for (const [name, s] of replicas) {
      const cmd = s.command as string[];
      for (const f of cmd.filter((a) => a.startsWith('--'))) assert.ok(flags.includes(f), `${name}: svcca serve has no ${f}`);
      names.add(cmd[cmd.indexOf('--replica') + 1]!);
      assert.deepEqual(s.networks.default.aliases, ['ca'], `${name}: reachable as ca`);
      assert.equal(s.environment.SVCCA_LEDGER, services['ca-init']!.environment.SVCCA_LEDGER);
      const secretPath = (p: string) => /^\/run\/secrets\/(.+)$/.exec(p)?.[1];
      assert.ok(s.secrets.includes(secretPath(cmd[cmd.indexOf('--passphrase-file') + 1]!)), `${name}: the passphrase is a secret it gets`);
      assert.ok(s.secrets.includes(secretPath(s.environment.PGPASSFILE)), `${name}: the pgpass file is a secret it gets`);
      assert.ok(compose.secrets[secretPath(s.environment.PGPASSFILE)!], 'pgpass is declared');
      // The image's SVCCA_DIR is the CA directory ca-init made.
      assert.ok(s.volumes.includes('ca-data:/var/lib/svcca/ca-data'), `${name}: the CA directory`);
      assert.equal(s.depends_on['ca-init'].condition, 'service_completed_successfully');
    }
    assert.equal(names.size, 2, 'distinct --replica names');
    assert.match(readFileSync(join(REPO, 'Dockerfile'), 'utf8'), /SVCCA_DIR=\/var\/lib\/svcca\/ca-data/);
  });
});

describe('examples/kubernetes/ha', () => {
  const dir = join(EXAMPLES, 'kubernetes', 'ha');
  const objects = parseAllDocuments(readFileSync(join(dir, 'svcca-serve-ha.yaml'), 'utf8')).map((d) => d.toJS() as Obj);
  const find = (kind: string) => objects.find((o) => o.kind === kind)!;
  const deployment = find('Deployment');
  const pod = deployment.spec.template.spec;
  const serve = pod.containers[0];
  const init = pod.initContainers[0];
  const arg = (flag: string) => serve.args[serve.args.indexOf(flag) + 1] as string;
  const mountOf = (c: Obj, path: string) => c.volumeMounts.find((m: Obj) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
  let ca: TestCa;
  before(() => (ca = makeCa({ trustDomain: TRUST_DOMAIN })));
  after(() => ca?.cleanup());

  test('a Deployment of 2 replicas with a PDB, named by pod, ready on /readyz, behind the svcca-ca Service', () => {
    assert.equal(deployment.spec.replicas, 2);
    assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
    const labels = deployment.spec.template.metadata.labels;
    assert.deepEqual(find('PodDisruptionBudget').spec.selector.matchLabels, labels);
    assert.equal(find('PodDisruptionBudget').spec.minAvailable, 1);
    const service = find('Service');
    assert.deepEqual(service.spec.selector, labels);
    const https = service.spec.ports.find((p: Obj) => p.name === 'https');
    assert.equal(serve.ports.find((p: Obj) => p.name === https.targetPort).containerPort, port(arg('--listen')));
    assert.equal(serve.readinessProbe.httpGet.path, '/readyz');
    assert.equal(serve.readinessProbe.httpGet.port, port(arg('--admin')));
    const env = (name: string) => serve.env.find((e: Obj) => e.name === name);
    assert.equal(env('SVCCA_REPLICA').valueFrom.fieldRef.fieldPath, 'metadata.name');
    assert.equal(env('PGPASSWORD').valueFrom.secretKeyRef.name, 'svcca-ledger-password');
    const passphraseMount = mountOf(serve, arg('--passphrase-file'));
    assert.ok(pod.volumes.find((v: Obj) => v.name === passphraseMount.name).secret, 'the passphrase from a Secret');
    assert.ok(!objects.some((o) => o.kind === 'PersistentVolumeClaim'), 'no shared volume: the ledger is the shared state');
    const flags = serveFlags();
    for (const f of serve.args.filter((a: string) => a.startsWith('--'))) assert.ok(flags.includes(f), `svcca serve has no ${f}`);
  });

  test("the init container copies every file svcca serve needs from the Secret into the pod's own CA directory", () => {
    const caDir = arg('--dir');
    const shared = mountOf(serve, caDir);
    assert.equal(mountOf(init, caDir).name, shared.name);
    assert.ok(pod.volumes.find((v: Obj) => v.name === shared.name).emptyDir);
    const filesMount = init.volumeMounts.find((m: Obj) => pod.volumes.find((v: Obj) => v.name === m.name).secret);
    assert.equal(pod.volumes.find((v: Obj) => v.name === filesMount.name).secret.secretName, 'svcca-ca-files');
    // Run the script for real against a CA made by the CLI, with the paths moved into a temp dir.
    const root = tempDir('svcca-k8s-ha-');
    const secretDir = join(root, 'secret');
    mkdirSync(secretDir);
    const needed = readdirSync(ca.dir).filter(
      (f) => !['root.key', 'ledger.db', 'issued', 'retired'].includes(f) && !f.startsWith('ledger.db-'),
    );
    for (const f of needed) copyFileSync(join(ca.dir, f), join(secretDir, f));
    const script = (init.args[0] as string).replaceAll(filesMount.mountPath, secretDir).replaceAll(shared.mountPath, join(root, 'volume'));
    mkdirSync(join(root, 'volume'));
    const res = run('sh', ['-c', script]);
    assert.equal(res.status, 0, res.stderr);
    const copied = join(root, 'volume', caDir.slice(shared.mountPath.length));
    assert.deepEqual(readdirSync(copied).sort(), needed.sort(), 'every file of the CA but root.key and the ledger');
    for (const f of needed) assert.ok(readFileSync(join(copied, f)).equals(readFileSync(join(ca.dir, f))), f);
    const mode = (f: string) => statSync(join(copied, f)).mode & 0o777;
    assert.equal(mode('intermediate.key'), 0o600);
    assert.equal(mode('config'), 0o600);
    assert.equal(mode('.'), 0o700);
  });
});
