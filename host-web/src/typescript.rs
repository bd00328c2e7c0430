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

/** The error `target` rejects with on a miss (`name` is "LinkCacheMiss"). */
export interface LinkCacheMissError extends Error {
  missCause: MissCause;
  /** The function the miss is about: the target, or a function it reaches. */
  function: string;
  /** The missing dependency or the stale global, if any. */
  detail: string | null;
}

/** What `tryTarget` resolves to. */
export type TargetReport =
  | { hit: true; fn: Function; module: string; signature: string; params: ValueType[]; results: ValueType[];
      /** Modules this call instantiated (the partial load), compiled or not. */
      loaded: string[];
      /** Modules this call compiled from IndexedDB bytes. */
      compiled: string[]; timeMs: number }
  | { hit: false; missCause: MissCause; function: string; detail: string | null; message: string; timeMs: number }
  | { hit: false; error: Error; message: string; timeMs: number };

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
  /** Plans made, and the IndexedDB transactions they took (one each unless resolveGlobal awaited). */
  plans: number;
  planTransactions: number;
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

/** A message of `onChange`: another tab or worker added modules or cleared the cache. */
export type ChangeMessage = { type: "added"; modules: string[] } | { type: "cleared"; modules: [] } | { type: "closed"; modules: [] };
"#;
