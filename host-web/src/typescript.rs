//! The TypeScript declarations of the JS API that wasm-bindgen cannot derive.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** The options of `LinkCache.open`. */
export interface LinkCacheOptions {
  /** Your import object, for every import namespace other than `linkcache:fn` and `linkcache:global`. */
  imports?: WebAssembly.Imports;
  /**
   * The value of a global definition (the text the module was compiled against; `bytes` holds it raw):
   * a number for i32, f32 and f64, a BigInt for i64. Throw, or return `{ stale: reason }`, when the
   * definition is outdated: the functions that use it become `staleGlobal` misses.
   * Default: the definition is the text of a literal of the global's type.
   */
  resolveGlobal?: (name: string, definition: string, type: ValueType, bytes: Uint8Array) =>
    number | bigint | { stale: string } | Promise<number | bigint | { stale: string }>;
  /** Ask the browser to make this origin's storage persistent (`navigator.storage.persist()`). */
  persist?: boolean;
}

export type ValueType = "i32" | "i64" | "f32" | "f64";

/** Why `target` cannot return a function. */
export type MissCause = "unknown" | "missingDependency" | "staleGlobal" | "broken" | "signatureMismatch";

/** The `name` of each error class: the class's own name. */
export type LinkCacheErrorName =
  | "LinkCacheError" | "LinkCacheMiss" | "LinkCacheInvalidModule" | "LinkCacheCorrupt" | "LinkCacheReentrant"
  | "LinkCacheCompileFailed" | "LinkCacheNotLoaded" | "LinkCacheStorage" | "LinkCacheQuotaExceeded"
  | "LinkCacheUpgradeBlocked" | "LinkCacheSchemaTooNew" | "LinkCacheClosed";

/** The base class of every error linkcache-web throws or rejects with (`instanceof LinkCacheError`). */
export class LinkCacheError extends Error {
  /** The name of the error's class. */
  name: LinkCacheErrorName;
  constructor(message?: string, options?: { cause?: unknown });
}
/** `target` cannot return a function: `missCause`, `function` and `detail` say why. */
export class LinkCacheMiss extends LinkCacheError {
  name: "LinkCacheMiss";
  missCause: MissCause;
  /** The function the miss is about: the target, or a function it reaches. */
  function: string;
  /** The missing dependency or the stale global, if any. */
  detail: string | null;
  constructor(message?: string, options?: { missCause?: MissCause; function?: string; detail?: string | null; cause?: unknown });
}
/** `addModule` got bytes that are not a module linkcache accepts. */
export class LinkCacheInvalidModule extends LinkCacheError { name: "LinkCacheInvalidModule"; }
/** A bundle or a stored record failed its checks. */
export class LinkCacheCorrupt extends LinkCacheError { name: "LinkCacheCorrupt"; }
/** `getOrCompile` was called from inside a compile callback. */
export class LinkCacheReentrant extends LinkCacheError { name: "LinkCacheReentrant"; }
/** A compile callback threw (what it threw is the `cause`) or returned no module that helps. */
export class LinkCacheCompileFailed extends LinkCacheError { name: "LinkCacheCompileFailed"; }
/** A lazy edge was called before its function was targeted. */
export class LinkCacheNotLoaded extends LinkCacheError { name: "LinkCacheNotLoaded"; }
/** IndexedDB failed; `cause` is its `DOMException` when there is one. */
export class LinkCacheStorage extends LinkCacheError {
  name: "LinkCacheStorage" | "LinkCacheQuotaExceeded" | "LinkCacheUpgradeBlocked" | "LinkCacheSchemaTooNew" | "LinkCacheClosed";
}
/** The origin's storage quota is full; nothing was half-written (`cause`: the `QuotaExceededError`). */
export class LinkCacheQuotaExceeded extends LinkCacheStorage { name: "LinkCacheQuotaExceeded"; }
/** Another tab or worker holds an older version of the database open. */
export class LinkCacheUpgradeBlocked extends LinkCacheStorage { name: "LinkCacheUpgradeBlocked"; }
/** The database was written by a newer linkcache-web. */
export class LinkCacheSchemaTooNew extends LinkCacheStorage { name: "LinkCacheSchemaTooNew"; }
/** The cache was closed, or another tab or worker upgraded or deleted the database. */
export class LinkCacheClosed extends LinkCacheStorage { name: "LinkCacheClosed"; }

/** The error `target` rejects with on a miss (the name of earlier versions). */
export type LinkCacheMissError = LinkCacheMiss;

/** What `tryTarget` resolves to. */
export type TargetReport =
  | { hit: true; fn: Function; module: string; signature: string; params: ValueType[]; results: ValueType[];
      /** Modules this call instantiated (the partial load), compiled or not. */
      loaded: string[];
      /** Modules this call compiled from IndexedDB bytes. */
      compiled: string[]; timeMs: number }
  | { hit: false; missCause: MissCause; function: string; detail: string | null; message: string; timeMs: number }
  | { hit: false; error: LinkCacheError; message: string; timeMs: number };

/**
 * Why a kept plan was not used: the index changed since (a commit, gc or clear), its record does not
 * decode or hold together, `resolveGlobal` decided a global differently, or a module failed its load.
 */
export type PlanNotReplayedReason = "staleIndex" | "damaged" | "globalChanged" | "moduleBroken";

/** What one tab or worker did since it opened the cache. */
export interface LinkCacheStats {
  hits: number;
  misses: Partial<Record<MissCause, number>>;
  modulesLoaded: number;
  modulesCompiled: number;
  globalsValidated: number;
  globalsStale: number;
  brokenSkipped: number;
  bytesRead: number;
  modulesAdded: number;
  /** Modules getOrCompile ran from memory because the storage quota was full. */
  notPersisted: number;
  compiles: number;
  /** Plans made or replayed, and the IndexedDB transactions they took (one each unless resolveGlobal awaited). */
  plans: number;
  planTransactions: number;
  planReads: number;
  /** Plans this tab kept for the next tab (made while it had loaded nothing), stored with the target's plan hint. */
  plansKept: number;
  /** Targets loaded from a kept plan, without planning (counted in `plans` too). */
  plansReplayed: number;
  /** Kept plans found and not used, by reason; each target was planned anew. */
  plansNotReplayed: Partial<Record<PlanNotReplayedReason, number>>;
  /** Manifests checked against their bytes at load (recorded by another analyzer version). */
  manifestsChecked: number;
  /** navigator.storage.estimate(), as of the last open, commit or refreshStats(). */
  usage?: number;
  quota?: number;
  timeMs: number;
}

export interface FunctionInfo { name: string; signature: string; calls: string[]; globals: string[] }

export interface ModuleInfo {
  id: string;
  committedAt: number;
  /** When a tab last recorded a use of it (ms since the epoch): what `gc` goes by. */
  usedAt?: number;
  byteLen?: number;
  /** Instantiated in this tab. */
  loaded: boolean;
  /** Why its manifest cannot be read. */
  broken?: string;
  functions: FunctionInfo[];
}

export interface CacheGraph {
  modules: ModuleInfo[];
  functions: { name: string; definedIn: string[]; boundTo: string | null }[];
  edges: { module: string; function: string; calls: string }[];
}

/** What `gc` did: the modules evicted (least recently used first) and the bytes of records freed and left. */
export interface GcReport { evicted: string[]; freedBytes: number; remainingBytes: number }

/** A message of `onChange`: another tab or worker added modules, cleared the cache or evicted modules with `gc`. */
export type ChangeMessage =
  | { type: "added"; modules: string[] }
  | { type: "cleared"; modules: [] }
  | { type: "evicted"; modules: string[] }
  | { type: "closed"; modules: [] };
"#;
