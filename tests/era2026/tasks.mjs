// The Tasks extension on the SDK v2's own request handlers, task table in process memory (SDK
// 2.4.0 has no tasks runtime). 2026-07-28 (SEP-2663, extension io.modelcontextprotocol/tasks):
// a task-supporting tools/call from a client that declared the extension answers
// resultType "task" with taskId, status, ttlMs, pollIntervalMs; tasks/get inlines the result
// (or the error) once terminal; tasks/update and tasks/cancel answer an empty ack; without the
// extension declared, task methods answer -32021 and tools run synchronously. 2025-11-25: a
// task-augmented tools/call (params.task) answers result.task; tasks/get, tasks/result,
// tasks/list, tasks/cancel.
import { randomUUID } from 'node:crypto';
import { ProtocolError } from '@modelcontextprotocol/server';
import { z } from 'zod';

export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';
const notFound = -32602;
const missingCapability = -32021;

// Whether a 2026-07-28 request's client declared the tasks extension (per-request _meta).
export function declaresTasks(body) {
  const caps = body?.params?._meta?.['io.modelcontextprotocol/clientCapabilities'];
  return caps?.extensions?.[TASKS_EXTENSION] !== undefined;
}

function requireExtension(body) {
  if (!declaresTasks(body)) {
    throw new ProtocolError(missingCapability, `Missing required client capability: extensions.${TASKS_EXTENSION}`,
      { requiredCapabilities: { extensions: { [TASKS_EXTENSION]: {} } } });
  }
}

export class TaskTable {
  constructor(pod, { ttlMs, pollMs }) {
    this.pod = pod;
    this.ttlMs = ttlMs;
    this.pollMs = pollMs;
    this.tasks = new Map();
  }

  // Starts `run(signal)` (resolves with a CallToolResult, or throws a ProtocolError) as a task.
  create(run) {
    const now = new Date().toISOString();
    const abort = new AbortController();
    const task = { taskId: randomUUID(), status: 'working', createdAt: now, lastUpdatedAt: now, abort };
    const settle = (status, fields) => {
      if (task.status !== 'working') return;
      Object.assign(task, { status, ...fields, lastUpdatedAt: new Date().toISOString() });
    };
    task.done = run(abort.signal, task.taskId).then(
      (result) => settle(abort.signal.aborted ? 'cancelled' : 'completed', { result }),
      (e) => settle(abort.signal.aborted ? 'cancelled' : 'failed',
        { error: { code: typeof e?.code === 'number' ? e.code : -32603, message: String(e?.message ?? e) } }));
    task.cancel = () => { abort.abort(); settle('cancelled', {}); };
    setTimeout(() => this.tasks.delete(task.taskId), this.ttlMs).unref();
    this.tasks.set(task.taskId, task);
    return task;
  }

  get(taskId) {
    const task = this.tasks.get(taskId);
    if (!task) throw new ProtocolError(notFound, 'Task not found', { pod: this.pod, taskId });
    return task;
  }

  modern(task) {
    const out = { taskId: task.taskId, status: task.status, createdAt: task.createdAt,
      lastUpdatedAt: task.lastUpdatedAt, ttlMs: this.ttlMs, pollIntervalMs: this.pollMs };
    if (task.status === 'completed') out.result = task.result;
    if (task.status === 'failed') out.error = task.error;
    return out;
  }

  legacy(task) {
    return { taskId: task.taskId, status: task.status, createdAt: task.createdAt,
      lastUpdatedAt: task.lastUpdatedAt, ttl: this.ttlMs, pollInterval: this.pollMs };
  }

  // A task-supporting tool's answer: a task where the request allows one, else the result.
  async answer(modern, body, run) {
    if (modern && declaresTasks(body)) return { resultType: 'task', ...this.modern(this.create(run)) };
    // The SDK's 2025 tools/call result check wants content beside another result family.
    if (!modern && body?.params?.task !== undefined) return { content: [], task: this.legacy(this.create(run)) };
    return run(new AbortController().signal);
  }

  // tasks/* on the per-request server, for its era.
  register(server, modern, body) {
    const byId = { params: z.object({ taskId: z.string() }).passthrough() };
    const on = (method, handler) => server.server.setRequestHandler(method, byId, handler);
    if (modern) {
      on('tasks/get', async ({ taskId }) => { requireExtension(body); return this.modern(this.get(taskId)); });
      on('tasks/update', async ({ taskId }) => { requireExtension(body); this.get(taskId); return {}; });
      on('tasks/cancel', async ({ taskId }) => { requireExtension(body); this.get(taskId).cancel(); return {}; });
      return;
    }
    on('tasks/get', async ({ taskId }) => this.legacy(this.get(taskId)));
    on('tasks/cancel', async ({ taskId }) => {
      const task = this.get(taskId);
      task.cancel();
      return this.legacy(task);
    });
    on('tasks/result', async ({ taskId }) => {
      const task = this.get(taskId);
      await task.done;
      if (task.status === 'failed') throw new ProtocolError(task.error.code, task.error.message);
      if (task.status !== 'completed') throw new ProtocolError(notFound, `Task ${task.status}`, { pod: this.pod, taskId });
      return { ...task.result, _meta: { 'io.modelcontextprotocol/related-task': { taskId } } };
    });
    server.server.setRequestHandler('tasks/list', { params: z.object({ cursor: z.string().optional() }).passthrough() },
      async () => ({ tasks: [...this.tasks.values()].map((t) => this.legacy(t)) }));
  }
}

// Sleeps `ms`, or rejects when `signal` aborts.
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); reject(new Error('cancelled')); }, { once: true });
  });
}
