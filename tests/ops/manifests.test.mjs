// deploy/ checked offline: every manifest that a kustomization in deploy/ reaches is
// validated against the Kubernetes API's schemas (k8s_schema.mjs), and the invariants that
// bite at apply time or at the first request are checked across the manifests and the
// sidecar's own config, which the real binary validates (--check-config).
//   node --test tests/ops/manifests.test.mjs   (MCPPROXY_BINARY: the proxy binary)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { validateManifest } from './k8s_schema.mjs';

const root = path.resolve(import.meta.dirname, '..', '..');
const deploy = path.join(root, 'deploy');
const binary = process.env.MCPPROXY_BINARY ?? path.join(root, 'build', 'mcp-session-proxy');
const layouts = ['sidecar', 'toolhive'];

// The resources a kustomization reaches (files, and directories with a kustomization of
// their own), each document with the file it came from.
function resources(dir, seen = new Set()) {
  const kfile = path.join(dir, 'kustomization.yaml');
  const k = YAML.parse(fs.readFileSync(kfile, 'utf8'));
  const docs = [];
  seen.add(kfile);
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    if (fs.statSync(p).isDirectory()) {
      docs.push(...resources(p, seen));
      continue;
    }
    seen.add(p);
    for (const d of YAML.parseAllDocuments(fs.readFileSync(p, 'utf8'))) {
      if (d.errors.length) throw new Error(`${p}: ${d.errors[0].message}`);
      const doc = d.toJS();
      if (doc) docs.push({ file: path.relative(root, p), doc });
    }
  }
  return docs;
}

const byKind = (docs, kind) => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
const named = (docs, kind, name) => byKind(docs, kind).find((d) => d.metadata.name === name);
const selects = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v) && Object.keys(selector ?? {}).length > 0;

function seconds(duration) {
  const m = /^(\d+)(ms|s|m|h)$/.exec(duration);
  assert.ok(m, `a duration: ${duration}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
}

function hostPort(text) {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at), port: Number(text.slice(at + 1)) };
}

// The sidecar's config as the binary sees it inside the pod: the Secret's keys are written
// as files where the pod mounts them, and --check-config must accept the result.
function checkConfigInPod(configText, secret, secretMount) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-check-'));
  try {
    for (const [key, value] of Object.entries(secret.stringData ?? {})) fs.writeFileSync(path.join(dir, key), value);
    const text = configText.split(`${secretMount}/`).join(`${dir}/`);
    const cfg = YAML.parse(configText);
    for (const file of [
      cfg.sessions?.redis?.password_file,
      cfg.sessions?.binding_secret_file,
      cfg.admin?.token_file,
    ].filter(Boolean)) {
      assert.ok(file.startsWith(`${secretMount}/`), `${file} is under the Secret's mount ${secretMount}`);
      const key = file.slice(secretMount.length + 1);
      assert.ok(key in (secret.stringData ?? {}), `the Secret has the key ${key}`);
    }
    fs.writeFileSync(path.join(dir, 'config.yaml'), text);
    const out = execFileSync(binary, ['--check-config', '--config', path.join(dir, 'config.yaml')], {
      encoding: 'utf8',
    });
    assert.match(out, /^# config OK/);
    return cfg;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('every manifest file in deploy/ is reached by a kustomization', () => {
  const seen = new Set();
  for (const l of layouts) resources(path.join(deploy, l), seen);
  const all = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (!['grafana', 'prometheus'].includes(e.name)) walk(p);
      } else if (/\.ya?ml$/.test(e.name)) {
        all.push(p);
      }
    }
  };
  walk(deploy);
  const unreached = all.filter((p) => !seen.has(p)).map((p) => path.relative(root, p));
  assert.deepEqual(unreached, []);
});

for (const layout of layouts) {
  test(`${layout}: every Kubernetes manifest is valid against the API schema, with no unknown field`, async () => {
    let checked = 0;
    for (const { file, doc } of resources(path.join(deploy, layout))) {
      const errors = await validateManifest(doc);
      if (errors === null) {
        assert.equal(doc.apiVersion, 'toolhive.stacklok.dev/v1beta1', `${file}: ${doc.kind} is no Kubernetes kind`);
        continue;
      }
      assert.deepEqual(errors, [], `${file}: ${doc.kind} ${doc.metadata?.name}`);
      ++checked;
    }
    assert.ok(checked >= 6, `${checked} manifests checked`);
  });

  test(`${layout}: selectors match labels, Services select pods, secrets and config maps exist`, () => {
    const docs = resources(path.join(deploy, layout));
    const workloads = [...byKind(docs, 'Deployment'), ...byKind(docs, 'StatefulSet')];
    for (const w of workloads) {
      assert.ok(selects(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name} selector`);
      const pod = w.spec.template.spec;
      for (const v of pod.volumes ?? []) {
        if (v.configMap) assert.ok(named(docs, 'ConfigMap', v.configMap.name), `ConfigMap ${v.configMap.name}`);
        if (v.secret) assert.ok(named(docs, 'Secret', v.secret.secretName), `Secret ${v.secret.secretName}`);
      }
      for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) assert.ok(named(docs, 'Secret', ref.name)?.stringData?.[ref.key] !== undefined, `${ref.name}/${ref.key}`);
        }
        for (const m of c.volumeMounts ?? []) {
          assert.ok(
            (pod.volumes ?? []).some((v) => v.name === m.name) ||
              (w.spec.volumeClaimTemplates ?? []).some((t) => t.metadata.name === m.name),
            `${c.name} mounts ${m.name}`,
          );
        }
      }
    }
    for (const s of byKind(docs, 'Service')) {
      // The operator makes the ToolHive layout's StatefulSet; its pods carry app: <name>.
      const mcp = byKind(docs, 'MCPServer').find((m) => s.spec.selector.app === m.metadata.name);
      assert.ok(mcp || workloads.some((w) => selects(s.spec.selector, w.spec.template.metadata.labels)), `${s.metadata.name} selects pods`);
    }
    for (const p of byKind(docs, 'PodDisruptionBudget')) {
      assert.ok(workloads.some((w) => selects(p.spec.selector.matchLabels, w.spec.template.metadata.labels)), p.metadata.name);
    }
    // A StatefulSet's pods have DNS names only under a headless Service named as its serviceName.
    for (const ss of byKind(docs, 'StatefulSet')) {
      const svc = named(docs, 'Service', ss.spec.serviceName);
      assert.ok(svc, `${ss.metadata.name}: Service ${ss.spec.serviceName}`);
      assert.equal(svc.spec.clusterIP, 'None', `${ss.spec.serviceName} is headless`);
      assert.ok(selects(svc.spec.selector, ss.spec.template.metadata.labels), `${ss.spec.serviceName} selects ${ss.metadata.name}`);
    }
  });
}

// The sidecar container of the plain layout, with its pod.
function sidecarPod(docs) {
  for (const d of byKind(docs, 'Deployment')) {
    const pod = d.spec.template.spec;
    const c = (pod.initContainers ?? []).find((x) => x.name === 'mcp-session-proxy');
    if (c) return { deployment: d, pod, c };
  }
  return null;
}

test('sidecar: the pod, the sidecar, its config and the StatefulSet agree', () => {
  const docs = resources(path.join(deploy, 'sidecar'));
  const found = sidecarPod(docs);
  assert.ok(found, 'a Deployment with the mcp-session-proxy sidecar');
  const { pod, c } = found;
  assert.equal(c.restartPolicy, 'Always', 'a native sidecar: up before the runner, stopped after it');
  const configVolume = pod.volumes.find((v) => v.name === c.volumeMounts.find((m) => m.mountPath === '/etc/mcp-session-proxy').name);
  assert.deepEqual(c.args, ['--config', '/etc/mcp-session-proxy/config.yaml']);
  const configMap = named(docs, 'ConfigMap', configVolume.configMap.name);
  const secretMount = c.volumeMounts.find((m) => pod.volumes.find((v) => v.name === m.name)?.secret);
  const secretVolume = pod.volumes.find((v) => v.name === secretMount.name);
  const cfg = checkConfigInPod(configMap.data['config.yaml'], named(docs, 'Secret', secretVolume.secret.secretName), secretMount.mountPath);

  // Probes on the admin listener's port, at the paths the proxy serves.
  const admin = hostPort(cfg.admin_listen);
  assert.notEqual(admin.host, '127.0.0.1', 'the kubelet probes the pod address');
  const portOf = (p) => (typeof p === 'number' ? p : c.ports.find((x) => x.name === p).containerPort);
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) assert.equal(portOf(probe.httpGet.port), admin.port);
  // The MCP listener is for the runner in the pod only, and the runner sends there.
  const listen = hostPort(cfg.listen);
  assert.equal(listen.host, '127.0.0.1');
  const runnerConf = configMap.data['nginx.conf'];
  assert.match(runnerConf, new RegExp(`proxy_pass http://127\\.0\\.0\\.1:${listen.port};`));
  assert.match(runnerConf, /proxy_buffering off;/, 'SSE streams are relayed as they come');
  // Shutdown: the grace period holds the runner's preStop and the sidecar's drain.
  const runner = pod.containers[0];
  const preStop = runner.lifecycle?.preStop?.sleep?.seconds ?? 0;
  assert.ok(pod.terminationGracePeriodSeconds > preStop + seconds(cfg.drain_timeout ?? '20s'), 'grace period');
  // Locked down.
  for (const x of [c, runner]) {
    const sc = x.securityContext;
    assert.equal(sc.readOnlyRootFilesystem, true, x.name);
    assert.equal(sc.allowPrivilegeEscalation, false, x.name);
    assert.ok(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, x.name);
    assert.deepEqual(sc.capabilities.drop, ['ALL'], x.name);
    assert.ok(x.resources.requests && x.resources.limits, `${x.name} resources`);
  }
  // Secret files of mode 0440 are readable by the sidecar's group only through fsGroup.
  if ((secretVolume.secret.defaultMode ?? 0o644) % 8 < 4) {
    assert.equal(pod.securityContext.fsGroup, c.securityContext.runAsGroup ?? c.securityContext.runAsUser);
  }
  // The backend is the StatefulSet, by its headless Service.
  const ss = named(docs, 'StatefulSet', cfg.backend.statefulset);
  assert.ok(ss, `StatefulSet ${cfg.backend.statefulset}`);
  assert.equal(cfg.backend.service, ss.spec.serviceName);
  assert.equal(cfg.backend.replicas, ss.spec.replicas, 'backend.replicas');
  const mcpPort = ss.spec.template.spec.containers[0].ports.find((p) => p.containerPort === cfg.backend.port);
  assert.ok(mcpPort, `the MCP server listens on backend.port ${cfg.backend.port}`);
  // Redis: the URL's host is a Service of the layout, on its port.
  const redis = new URL(cfg.sessions.redis.url);
  const redisSvc = named(docs, 'Service', redis.hostname);
  assert.ok(redisSvc, `Service ${redis.hostname}`);
  assert.ok(redisSvc.spec.ports.some((p) => p.port === Number(redis.port)));
  // The runner's Service exposes the runner's port.
  const svc = byKind(docs, 'Service').find((s) => selects(s.spec.selector, found.deployment.spec.template.metadata.labels));
  assert.ok(svc.spec.ports.every((p) => runner.ports.some((rp) => rp.name === p.targetPort || rp.containerPort === p.targetPort)));
});

// MCPServer fields used here, as ToolHive's v1beta1 API names them (MCPServerSpec,
// ResourceOverrides, ProxyDeploymentOverrides, ResourceMetadataOverrides).
const toolhiveFields = {
  spec: ['image', 'transport', 'proxyPort', 'mcpPort', 'backendReplicas', 'replicas', 'sessionAffinity', 'resourceOverrides'],
  'spec.resourceOverrides': ['proxyDeployment', 'proxyService'],
  'spec.resourceOverrides.proxyDeployment': ['annotations', 'labels', 'podTemplateMetadataOverrides', 'env', 'imagePullSecrets'],
  'spec.resourceOverrides.proxyDeployment.podTemplateMetadataOverrides': ['annotations', 'labels'],
};

test('toolhive: the MCPServer, the pod DNS Service, the policy and the sidecar config agree', () => {
  const docs = resources(path.join(deploy, 'toolhive'));
  const [mcp] = byKind(docs, 'MCPServer');
  assert.ok(mcp);
  for (const [at, allowed] of Object.entries(toolhiveFields)) {
    const obj = at.split('.').reduce((o, k) => o?.[k], mcp);
    for (const k of Object.keys(obj ?? {})) assert.ok(allowed.includes(k), `MCPServer ${at}.${k}`);
  }
  const name = mcp.metadata.name;
  assert.equal(mcp.spec.transport, 'streamable-http');
  // Pod DNS: the operator's StatefulSet has serviceName <name>; a headless Service of that name.
  const dns = named(docs, 'Service', name);
  assert.ok(dns, `headless Service ${name}`);
  assert.equal(dns.spec.clusterIP, 'None');
  assert.deepEqual(dns.spec.selector, { app: name });
  // The opt-in label is the one the policy matches.
  const labels = mcp.spec.resourceOverrides.proxyDeployment.podTemplateMetadataOverrides.labels;
  const [policy] = byKind(docs, 'MutatingAdmissionPolicy');
  const [binding] = byKind(docs, 'MutatingAdmissionPolicyBinding');
  assert.equal(binding.spec.policyName, policy.metadata.name);
  const conditions = policy.spec.matchConditions.map((m) => m.expression).join('\n');
  for (const [k, v] of Object.entries(labels)) assert.ok(conditions.includes(`labels['${k}'] == '${v}'`), k);
  const cel = policy.spec.mutations[0].applyConfiguration.expression;
  // The sidecar's config, by the name the policy mounts.
  assert.ok(cel.includes('name: "mcp-session-proxy-" + variables.server'));
  const configMap = named(docs, 'ConfigMap', `mcp-session-proxy-${name}`);
  assert.ok(configMap, `ConfigMap mcp-session-proxy-${name}`);
  const secretName = /secretName: "([^"]+)"/.exec(cel)[1];
  const secretMount = /name: "mcp-session-proxy-secrets",\s*mountPath: "([^"]+)"/.exec(cel)[1];
  const cfg = checkConfigInPod(configMap.data['config.yaml'], named(docs, 'Secret', secretName), secretMount);
  // The runner sends to mcp-<name>:<mcpPort>; hostAliases maps that name to the sidecar.
  assert.ok(cel.includes('hostnames: ["mcp-" + variables.server]'));
  const listen = hostPort(cfg.listen);
  assert.equal(listen.host, '127.0.0.1');
  assert.equal(listen.port, mcp.spec.mcpPort);
  assert.notEqual(listen.port, mcp.spec.proxyPort, 'the runner has its own port');
  assert.equal(cfg.backend.port, mcp.spec.mcpPort);
  assert.equal(cfg.backend.statefulset, name);
  assert.equal(cfg.backend.service, name);
  assert.equal(cfg.backend.replicas, mcp.spec.backendReplicas);
  const admin = hostPort(cfg.admin_listen);
  for (const p of ['/healthz', '/readyz']) assert.ok(cel.includes(`path: "${p}", port: ${admin.port}`), p);
  assert.ok(cel.includes(`containerPort: ${admin.port}`));
  const grace = Number(/terminationGracePeriodSeconds: (\d+)/.exec(cel)[1]);
  assert.ok(grace > seconds(cfg.drain_timeout), 'grace period above drain_timeout');
  for (const s of ['readOnlyRootFilesystem: true', 'allowPrivilegeEscalation: false', 'runAsNonRoot: true', 'drop: ["ALL"]', 'restartPolicy: "Always"']) {
    assert.ok(cel.includes(s), s);
  }
  assert.ok(named(docs, 'Service', new URL(cfg.sessions.redis.url).hostname), 'the Redis Service');
});
