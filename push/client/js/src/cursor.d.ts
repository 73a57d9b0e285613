// Types of cursor.js (ADR 0025).

export interface DecodedCursor {
  version: number;
  /** 16 hex digits; "" for version 1 cursors. */
  session: string;
  /** In cursor order; offsets per topic in sorted order. */
  origins: { tag: number; offsets: number[] }[];
}

/** Decodes a cursor of a stream with `topics` topics; null when malformed. */
export function decodeCursor(id: string, topics: number): DecodedCursor | null;

/** The 16-bit tag a cursor carries for a region name. */
export function originTag(name: string): number;

export interface StreamPosition {
  topic: string;
  /** Region name; "" when the hello did not name it. */
  origin: string;
  offset: number;
}

/** Tells which stream each event id advanced. Works with a plain EventSource. */
export class StreamLocator {
  topics: string[];
  /** Feed herald.hello's data and id (the id may be empty). */
  hello(data: { topics?: string[]; origins?: string[]; origin?: string }, id?: string): void;
  /** Feed ids of events that carry no data of their own (herald.reset). */
  seen(id: string): void;
  /** The stream the event with this id advanced, or null. */
  advance(id: string): StreamPosition | null;
}
