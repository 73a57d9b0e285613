// Types of the Herald JS client (herald.js). Guide: docs/js-client.md.

export { decodeCursor, originTag, StreamLocator, StreamPosition, DecodedCursor } from "./cursor.js";

/** One delivered event. `data` is byte-exact as published (line breaks normalised to LF). */
export interface HeraldEvent {
  topic: string;
  /** Region the event was published in. */
  origin: string;
  /** The event's offset in its (topic, origin) stream. */
  offset: number;
  /** Event type ("message" when published without one). */
  type: string;
  data: string;
  /** The cursor after this event: pass it as `cursor` to resume after it. */
  id: string;
}

/** One stream whose history the client cannot get (herald.reset). */
export interface StreamReset {
  topic: string;
  origin: string;
  reason: "trimmed" | "epoch_changed" | "ahead" | "foreign_cursor" | "invalid_cursor" | "replica_behind" | string;
  lost_from: number;
  /** 0: unknown upper bound. */
  lost_to: number;
  epoch: string;
  continue_from: number;
}

export interface Moved {
  reason: string;
  alternates: string[];
}

export type State = "idle" | "connecting" | "open" | "reconnecting" | "failed" | "closed";

export interface Status {
  state: State;
  /** Base URL of the connection. */
  url: string;
  transport: Transport | "";
  /** open: the serving node, its region, whether the cursor was resumed. */
  node?: string;
  origin?: string;
  resumed?: boolean;
  session?: string;
  /** reconnecting: why, and the delay before the next attempt (ms). */
  reason?: "error" | "ended" | "moved" | "failback" | "token_refresh" | "manual" | string;
  delay?: number;
  attempt?: number;
  error?: unknown;
}

export type Transport = "websocket" | "fetch" | "eventsource";

/** A token, or a token with its expiry (ms since the epoch). JWT `exp` is read when no expiry is given. */
export type Token = string | { token: string; expiresAt?: number | Date } | null | undefined;

export interface ClientOptions {
  /** Base URLs of the home region (or node) and, after it, other regions in order of preference. */
  urls: string | string[];
  /** Called before each connect and before the token expires. */
  getToken?: () => Token | Promise<Token>;
  backoff?: { initial?: number; max?: number };
  /** Injected implementations (tests, Node). */
  fetch?: typeof fetch;
}

export interface SubscribeOptions extends ClientOptions {
  /** Resume after this cursor (an event's id). */
  cursor?: string;
  /** Without a cursor: "latest" (default) or "earliest". */
  from?: "latest" | "earliest";
  /** "auto" (default: fetch, then eventsource), one transport, or an order. */
  transport?: "auto" | Transport | Transport[];
  /** Keep the cursor in sessionStorage so a reload resumes: true (key from the topics) or a key. */
  persist?: boolean | string;
  storage?: Pick<Storage, "getItem" | "setItem">;
  /** Fail back to urls[0] when it is ready again, probing every this many ms (0: never). Default 30000. */
  failbackInterval?: number;
  /** Refresh the token this long before it expires (at most 20% of its life). Default 30000. */
  tokenRefreshMargin?: number;
  /** fetch transport: a connection silent this long (no event, no heartbeat) is dropped and resumed; also bounds a connect that gets no answer. Default 45000 ms (3 heartbeats at the default stream.heartbeat); 0 turns it off. */
  idleTimeout?: number;
  /** EventSource transport only: event types to listen for besides "message". */
  eventTypes?: string[];
  /** Send cookies (EventSource withCredentials; fetch credentials "include"). */
  withCredentials?: boolean;
  headers?: Record<string, string>;
  EventSource?: typeof EventSource;
  WebSocket?: typeof WebSocket;
  onEvent?: (e: HeraldEvent) => void;
  onReset?: (streams: StreamReset[], id: string) => void;
  onMoved?: (m: Moved) => void;
  onStatus?: (s: Status) => void;
  onError?: (e: HeraldError) => void;
}

export interface PublishOptions extends ClientOptions {
  /** Retries reuse it, so the event is stored once. Default: a random UUID. */
  idempotencyKey?: string;
  /** Attempts in all (default 6). */
  attempts?: number;
  signal?: AbortSignal;
}

export interface PublishResult {
  topic: string;
  origin: string;
  epoch: string;
  offset: number;
  time: string;
  duplicate: boolean;
}

export class HeraldError extends Error {
  status: number;
  code: string;
  alternates: string[];
  cursor: string;
  /** Seconds (Retry-After). */
  retryAfter: number;
  readonly retryable: boolean;
}

export class Subscription {
  readonly topics: string[];
  /** The last event id: resume point. */
  readonly cursor: string;
  readonly state: State;
  readonly transport: Transport | "";
  /** Resolves when the subscription is closed. */
  readonly done: Promise<void>;
  close(): void;
  /** Ends the current connection and reconnects (optionally to url), resuming. */
  reconnect(reason?: string, url?: string): void;
}

export const CLIENT_NAME: string;
export const FALLBACK_ORDER: readonly Transport[];

export function subscribe(topics: string[], opts: SubscribeOptions): Subscription;
export function publish(topic: string, event: string, data: unknown, opts: PublishOptions): Promise<PublishResult>;
export function createClient(cfg: ClientOptions): {
  subscribe(topics: string[], opts?: Partial<SubscribeOptions>): Subscription;
  publish(topic: string, event: string, data: unknown, opts?: Partial<PublishOptions>): Promise<PublishResult>;
};
export function backoffDelay(attempt: number, b: { initial?: number; max?: number }, floor?: number, random?: () => number): number;
export function tokenExpiry(token: string): number;

export class SSEParser {
  constructor(
    onEvent: (ev: { type: string; data: string; id: string }) => void,
    opts?: { lastEventId?: string; onRetry?: (ms: number) => void; onId?: (id: string) => void; maxLine?: number },
  );
  lastEventId: string;
  push(text: string): void;
}
