// Kubernetes manifests checked offline against the API's own schemas: kubernetes-models
// carries a validator compiled from the OpenAPI document of each kind (types, enums,
// required fields), and the field names of every object from its type declarations, which
// this module uses to refuse a field the API does not have (`readinesProbe`, a `sleep`
// under the wrong parent): the apiserver would drop such a field silently.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const modelsRoot = path.dirname(require.resolve('kubernetes-models/package.json'));
const machineryRoot = path.join(modelsRoot, '..', '@kubernetes-models', 'apimachinery');

// interface name -> Map(field -> type text), from every .d.ts of the models.
function readInterfaces() {
  const out = new Map();
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(p);
      } else if (entry.name.endsWith('.d.ts')) {
        parseDeclarations(fs.readFileSync(p, 'utf8'), out);
      }
    }
  };
  walk(modelsRoot);
  walk(machineryRoot);
  return out;
}

// The interfaces of one .d.ts file, by their short names (IDeploymentSpec); `out` gets them by
// the long names other files refer to (IIoK8sApiAppsV1DeploymentSpec), which are unique.
function parseDeclarations(text, out = new Map()) {
  const lines = text.split('\n');
  const local = new Map();
  for (let i = 0; i < lines.length; ++i) {
    const head = /^export interface (\w+)(?: extends ([\w, ]+))? \{$/.exec(lines[i]);
    if (!head) continue;
    const fields = new Map();
    for (++i; i < lines.length && lines[i] !== '}'; ++i) {
      const field = /^ {4}"([^"]+)"\??: (.*?);?$/.exec(lines[i]);
      if (field) fields.set(field[1], field[2]);
    }
    if (head[2] && head[2].includes('TypeMeta')) {
      fields.set('apiVersion', 'string');
      fields.set('kind', 'string');
    }
    local.set(head[1], fields);
  }
  for (const m of text.matchAll(/export type \{ (\w+) as (\w+),/g)) {
    if (local.has(m[1])) out.set(m[2], local.get(m[1]));
  }
  return local;
}

let interfaces = null;

// Fields `obj` has that its type has not, as JSON paths.
function unknownFields(obj, typeName, at, found) {
  interfaces ??= readInterfaces();
  const fields = interfaces.get(typeName);
  if (!fields || obj === null || typeof obj !== 'object' || Array.isArray(obj)) return;
  for (const [key, value] of Object.entries(obj)) {
    if (!fields.has(key)) {
      found.push(`${at}.${key}`);
      continue;
    }
    const ref = /^(?:Array<)?(I\w+)>?$/.exec(fields.get(key));
    if (!ref) continue;
    if (Array.isArray(value)) {
      value.forEach((item, n) => unknownFields(item, ref[1], `${at}.${key}[${n}]`, found));
    } else {
      unknownFields(value, ref[1], `${at}.${key}`, found);
    }
  }
}

// The model module of an apiVersion: "v1" -> kubernetes-models/v1, "apps/v1" ->
// kubernetes-models/apps/v1.
async function modelFor(apiVersion, kind) {
  let mod;
  try {
    mod = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    return null;
  }
  return mod[kind] ?? null;
}

// Errors of one manifest: the schema's, then unknown fields. `null` when the kind is not a
// Kubernetes API kind (a custom resource).
export async function validateManifest(doc) {
  const Model = await modelFor(doc.apiVersion, doc.kind);
  if (!Model) return null;
  const errors = [];
  try {
    new Model(doc).validate();
  } catch (e) {
    errors.push(e.message);
  }
  const unknown = [];
  interfaces ??= readInterfaces();
  const own = parseDeclarations(fs.readFileSync(path.join(modelsRoot, doc.apiVersion, `${doc.kind}.d.ts`), 'utf8'));
  interfaces.set(`top:${doc.apiVersion}/${doc.kind}`, own.get(`I${doc.kind}`));
  unknownFields(doc, `top:${doc.apiVersion}/${doc.kind}`, doc.kind, unknown);
  for (const u of unknown) errors.push(`unknown field ${u}`);
  return errors;
}
