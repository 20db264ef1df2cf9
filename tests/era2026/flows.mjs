// Task flows with the official SDK clients, counted: the table of issue 27.
// A flow: discover (2026) or initialize (2025), tools/list, tools/call of slow_work -> a task,
// tasks/get until the task is done, then its result (inline in the completed task on
// 2026-07-28, tasks/result on 2025). Every task request answered -32602 "Task not found"
// reached a replica that never saw the task: a misroute. A flow is clean when it got its own
// task's result with no misroute and no error.
//
//   node flows.mjs --target URL [--target URL2] [--flows 20] [--case NAME ...] [--json] [--listen]
//
// With two targets (two proxy replicas), flow i starts on target i%2 and polls its task
// through the other one at once. Cases (--case, default all but the v1-pod ones):
//   v2-modern   SDK v2 client, 2026-07-28 (pinned)        -> v2 pods (server.mjs)
//   v1-client   SDK v1 client (1.32.2, 2025-11-25)       -> v2 pods
//   v2-legacy   SDK v2 client, default negotiation (2025) -> v2 pods
//   v1-pods     SDK v1 client                             -> v1 pods with sessions (v1_server.mjs)
//   v2-v1-pods  SDK v2 client, auto negotiation           -> v1 pods with sessions
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema, GetTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';

const anyResult = z.object({}).passthrough();
const maxPolls = 400;
const taskNotFound = (e) => e?.code === -32602 && /Task not found/.test(e.message ?? '');

// SDK 2.4.0 has no tasks runtime: its client refuses a tools/call answered resultType "task"
// (UnsupportedResultType) after reading it. The transport's fetch keeps the task answer it
// read, so the flow takes the task from there; everything on the wire is the SDK's own.
function taskCapturingFetch() {
  const captured = { task: undefined };
  const fetchImpl = async (url, init) => {
    const response = await fetch(url, init);
    let method;
    try { method = typeof init?.body === 'string' ? JSON.parse(init.body).method : undefined; } catch { /* not JSON */ }
    if (method !== 'tools/call' || !response.ok) return response;
    const text = await response.clone().text();
    const bodies = text.trimStart().startsWith('{') ? [text]
      : text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim());
    for (const b of bodies) {
      try {
        const msg = JSON.parse(b);
        if (msg?.result?.resultType === 'task') captured.task = msg.result;
      } catch { /* a non-JSON frame */ }
    }
    return response;
  };
  return { captured, fetchImpl };
}

// The client kinds, each with connect / list / call (-> task id) / get / result / close.
const kinds = {
  'v2-modern': { era: 'modern', v2: true, negotiation: { mode: { pin: '2026-07-28' } } },
  'v2-legacy': { era: 'legacy', v2: true, negotiation: { mode: 'legacy' } },
  'v2-auto': { era: 'auto', v2: true, negotiation: { mode: 'auto' } },
  v1: { era: 'legacy', v2: false },
};

async function connectClient(kind, url, sessionId) {
  const k = kinds[kind];
  if (!k.v2) {
    const client = new ClientV1({ name: 'era-flows-v1', version: '1.0.0' });
    const transport = new TransportV1(new URL(url), sessionId ? { sessionId } : {});
    await client.connect(transport);
    return { kind, client, transport, modern: false };
  }
  const { captured, fetchImpl } = taskCapturingFetch();
  // A 2026 server creates tasks for clients that declare the tasks extension (SEP-2663).
  const client = new ClientV2({ name: 'era-flows-v2', version: '1.0.0' },
    { versionNegotiation: k.negotiation, capabilities: { extensions: { 'io.modelcontextprotocol/tasks': {} } } });
  const transport = new TransportV2(new URL(url), { fetch: fetchImpl, ...(sessionId ? { sessionId } : {}) });
  await client.connect(transport);
  const modern = client.getNegotiatedProtocolVersion?.() === '2026-07-28';
  return { kind, client, transport, captured, modern };
}

async function callForTask(c) {
  if (c.modern) {
    c.captured.task = undefined;
    try {
      const r = await c.client.callTool({ name: 'slow_work', arguments: { text: 'flow' } });
      throw new Error(`tools/call answered without a task: ${JSON.stringify(r).slice(0, 200)}`);
    } catch (e) {
      if (!c.captured.task) throw e;
      return c.captured.task.taskId;
    }
  }
  const params = { name: 'slow_work', arguments: { text: 'flow' }, task: { ttl: 60000 } };
  const r = await c.client.request({ method: 'tools/call', params }, kinds[c.kind].v2 ? anyResult : CreateTaskResultSchema);
  if (!r?.task?.taskId) throw new Error(`tools/call answered without a task: ${JSON.stringify(r).slice(0, 200)}`);
  return r.task.taskId;
}

async function getTask(c, taskId) {
  return c.client.request({ method: 'tasks/get', params: { taskId } }, kinds[c.kind].v2 ? anyResult : GetTaskResultSchema);
}

async function taskResult(c, taskId) {
  return c.client.request({ method: 'tasks/result', params: { taskId } }, kinds[c.kind].v2 ? anyResult : CallToolResultSchema);
}

// One flow; `stats` gathers the task requests and misroutes.
async function flow(kind, startUrl, pollUrl, stats) {
  const c = await connectClient(kind, startUrl);
  const clients = [c];
  try {
    await c.client.listTools();
    const taskId = await callForTask(c);
    // The session id (v1 pods) travels to the other target, so the poll is the same session's.
    const p = pollUrl === startUrl ? c : await connectClient(kind, pollUrl, c.transport.sessionId);
    if (p !== c) clients.push(p);
    let misrouted = 0;
    let task;
    for (let i = 0; i < maxPolls; i++) {
      stats.taskRequests++;
      try {
        task = await getTask(p, taskId);
      } catch (e) {
        if (!taskNotFound(e)) throw e;
        misrouted++;
        stats.misrouted++;
        task = undefined;
      }
      if (task && task.status !== 'working' && task.status !== 'input_required') break;
      await new Promise((r) => setTimeout(r, task?.pollIntervalMs ?? task?.pollInterval ?? 100));
    }
    if (!task || task.status !== 'completed') throw new Error(`task ${taskId} not completed: ${JSON.stringify(task)}`);
    let result = task.result;
    if (!p.modern) {
      for (let i = 0; i < maxPolls && result === undefined; i++) {
        stats.taskRequests++;
        try {
          result = await taskResult(p, taskId);
        } catch (e) {
          if (!taskNotFound(e)) throw e;
          misrouted++;
          stats.misrouted++;
        }
      }
    }
    if (result?.structuredContent?.taskId !== taskId) throw new Error(`result of ${taskId}: ${JSON.stringify(result).slice(0, 300)}`);
    stats.pods.add(result.structuredContent.pod);
    if (misrouted === 0) stats.clean++;
  } finally {
    for (const x of clients) await x.client.close().catch(() => {});
  }
}

// A handle flow (2026-07-28): open_handle on the start target, then use_handle three times
// through the poll target; the handle travels in Mcp-Param-Handle (x-mcp-header). A use answered
// "Handle not found" reached a replica that never made the handle: a misroute.
const handleUses = 3;
const handleNotFound = (e) => /Handle not found/.test(e?.message ?? '');

async function handleFlow(kind, startUrl, pollUrl, stats) {
  const c = await connectClient(kind, startUrl);
  const clients = [c];
  try {
    const opened = await c.client.callTool({ name: 'open_handle', arguments: {} });
    const handle = opened.structuredContent?.handle;
    if (!handle) throw new Error(`open_handle answered no handle: ${JSON.stringify(opened).slice(0, 200)}`);
    const p = pollUrl === startUrl ? c : await connectClient(kind, pollUrl);
    if (p !== c) clients.push(p);
    let misrouted = 0;
    for (let i = 1; i <= handleUses; i++) {
      stats.taskRequests++;
      let r;
      try {
        r = await p.client.callTool({ name: 'use_handle', arguments: { handle } });
      } catch (e) {
        if (!handleNotFound(e)) throw e;
      }
      if (r === undefined || r.isError) {
        if (r?.isError && !handleNotFound({ message: JSON.stringify(r.content) })) throw new Error(JSON.stringify(r).slice(0, 300));
        misrouted++;
        stats.misrouted++;
        continue;
      }
      stats.pods.add(r.structuredContent.pod);
      if (r.structuredContent.pod !== opened.structuredContent.pod) throw new Error(`handle used on ${r.structuredContent.pod}`);
    }
    if (misrouted === 0) stats.clean++;
  } finally {
    for (const x of clients) await x.client.close().catch(() => {});
  }
}

export const cases = {
  'v2-modern': { kind: 'v2-modern', pods: 'v2', label: 'v2 client (2026-07-28) -> v2 pods' },
  'v1-client': { kind: 'v1', pods: 'v2', label: 'v1 client (SDK 1.32.2, 2025) -> v2 pods' },
  'v2-legacy': { kind: 'v2-legacy', pods: 'v2', label: 'v2 client, default negotiation (2025) -> v2 pods' },
  'v1-pods': { kind: 'v1', pods: 'v1', label: 'v1 client -> v1 pods with sessions' },
  'v2-v1-pods': { kind: 'v2-auto', pods: 'v1', label: 'v2 client (auto negotiation) -> v1 pods with sessions' },
  'v2-handles': { kind: 'v2-modern', pods: 'v2', flow: handleFlow, unit: 'handle',
    label: 'v2 client (2026-07-28), a handle in Mcp-Param-Handle -> v2 pods' },
};

// N flows of one case at once over the targets; resolves with the counts.
export async function runCase(name, targets, flows = 20) {
  const { kind, unit = 'task' } = cases[name];
  const run = cases[name].flow ?? flow;
  const stats = { case: name, unit, flows, clean: 0, taskRequests: 0, misrouted: 0, errors: [], pods: new Set() };
  await Promise.all(Array.from({ length: flows }, async (_, i) => {
    const start = targets[i % targets.length];
    const poll = targets[(i + 1) % targets.length];
    try {
      await run(kind, start, poll, stats);
    } catch (e) {
      stats.errors.push(String(e?.message ?? e).slice(0, 300));
    }
  }));
  return { ...stats, pods: [...stats.pods].sort() };
}

// subscriptions/listen (2026-07-28): `listeners` clients each hold a listen stream for
// tools/list_changed; another client calls change_tools `calls` times, each raising the
// notification on the replica that served it. Counts the notifications the listeners got
// (each listener should get every one: `listeners * calls`), waiting at most `waitMs` after
// the last call. Without fan-out a proxy delivers only the calls served by a listener's replica.
export async function runListen(targets, listeners = 5, calls = 6, waitMs = 2000) {
  let received = 0;
  let notify = () => {};
  const clients = [];
  try {
    for (let i = 0; i < listeners; i++) {
      const c = await connectClient('v2-modern', targets[i % targets.length]);
      clients.push(c);
      c.client.setNotificationHandler('notifications/tools/list_changed', () => { received++; notify(); });
      await c.client.listen({ toolsListChanged: true });
    }
    const caller = await connectClient('v2-modern', targets[0]);
    clients.push(caller);
    for (let i = 0; i < calls; i++) await caller.client.callTool({ name: 'change_tools', arguments: {} });
    const expected = listeners * calls;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      notify = () => { if (received >= expected) { clearTimeout(timer); resolve(); } };
      notify();
    });
    return { received, expected };
  } finally {
    for (const c of clients) await c.client.close().catch(() => {});
  }
}

export function row(r) {
  const err = r.errors.length ? `; ${r.errors.length} errors (${r.errors[0]})` : '';
  return `${r.clean}/${r.flows} clean; ${r.misrouted} of ${r.taskRequests} ${r.unit} requests misrouted${err}`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', multiple: true },
      flows: { type: 'string', default: '20' },
      case: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      listen: { type: 'boolean', default: false },
    },
  });
  if (!values.target?.length) throw new Error('--target URL (one or more)');
  if (values.listen) {
    const r = await runListen(values.target);
    console.log(`| subscriptions/listen, 6 change_tools calls | ${r.received} of ${r.expected} notifications |`);
  }
  const names = values.case ?? (values.listen ? [] : ['v2-modern', 'v1-client', 'v2-legacy']);
  for (const name of names) {
    if (!cases[name]) throw new Error(`unknown case ${name}: ${Object.keys(cases).join(', ')}`);
    const r = await runCase(name, values.target, Number(values.flows));
    console.log(values.json ? JSON.stringify(r) : `| ${cases[name].label} | ${row(r)} |`);
  }
}
