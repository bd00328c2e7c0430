// The demo's "compiler": WAT source for the module that defines each function. A real
// program would generate these from its own language; here they are written out.

export const library = {
  "util.add": {
    args: [],
    wat: `(module
  (func (export "util.add") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
  (func (export "util.mul") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1))))`,
  },
  "math.fib": {
    args: [25n],
    wat: `(module
  (import "linkcache:fn" "util.add" (func $add (param i64 i64) (result i64)))
  (func $fib (export "math.fib") (param $n i64) (result i64)
    (if (result i64) (i64.lt_s (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (call $add (call $fib (i64.sub (local.get $n) (i64.const 1)))
                       (call $fib (i64.sub (local.get $n) (i64.const 2))))))))`,
  },
  "math.gcd": {
    args: [1071n, 462n],
    wat: `(module
  (func $gcd (export "math.gcd") (param $a i64) (param $b i64) (result i64)
    (if (result i64) (i64.eqz (local.get $b)) (then (local.get $a))
      (else (call $gcd (local.get $b) (i64.rem_u (local.get $a) (local.get $b)))))))`,
  },
  "math.pow": {
    args: [7n, 1000n],
    wat: `(module
  (import "linkcache:fn" "util.mul" (func $mul (param i64 i64) (result i64)))
  (import "linkcache:global" "cfg.modulus" (global $m i64))
  (func (export "math.pow") (param $b i64) (param $e i64) (result i64) (local $r i64)
    (local.set $r (i64.const 1))
    (block $done (loop $next
      (br_if $done (i64.eqz (local.get $e)))
      (local.set $r (i64.rem_u (call $mul (local.get $r) (local.get $b)) (global.get $m)))
      (local.set $e (i64.sub (local.get $e) (i64.const 1)))
      (br $next)))
    (local.get $r))
  (@custom "linkcache.globals" "\\01\\0bcfg.modulus\\0a1000000007"))`,
  },
  "stack.run": {
    args: [0],
    wat: `(module
  ;; A tiny stack machine: program 0 is gcd(pow(3, 20), 6561), program 1 is pow(2, 30).
  (import "linkcache:fn" "math.pow" (func $pow (param i64 i64) (result i64)))
  (import "linkcache:fn" "math.gcd" (func $gcd (param i64 i64) (result i64)))
  (func (export "stack.run") (param $program i32) (result i64)
    (if (result i64) (i32.eqz (local.get $program))
      (then (call $gcd (call $pow (i64.const 3) (i64.const 20)) (i64.const 6561)))
      (else (call $pow (i64.const 2) (i64.const 30))))))`,
  },
};

// util.mul lives in util.add's module.
export function sourceOf(funcName) {
  if (funcName === "util.mul") return library["util.add"].wat;
  const gen = /^gen\.f(\d+)$/.exec(funcName);
  if (gen) return `(module (func (export "gen.f${gen[1]}") (result i32) (i32.const ${gen[1]})))`;
  return library[funcName]?.wat;
}

export const callable = ["math.fib", "math.gcd", "math.pow", "stack.run"];

// Functions for the race: each worker compiles its own bytes for both functions, and
// each duplicate returns something of its own: worker A's race.sq adds 10 and its race.f
// adds 1, worker B's add 20 and 2. race.f(6) = 36 + 10·(race.sq's tag) + (race.f's tag),
// so a result tells which worker's code ran for each function (47, 48, 57 or 58): a
// worker that ran its own duplicate of either instead of the one it is bound to gives
// itself away.
export const raceTag = (worker) => (worker === "A" ? 1 : 2);
export const raceFunctions = ["race.sq", "race.f"];
export function raceSources(worker) {
  const tag = raceTag(worker);
  return [
    `(module (func (export "race.sq") (param i32) (result i32)
       (i32.add (i32.mul (local.get 0) (local.get 0)) (i32.const ${10 * tag}))) (@custom "worker" "${worker}"))`,
    `(module (import "linkcache:fn" "race.sq" (func $sq (param i32) (result i32)))
       (func (export "race.f") (param i32) (result i32) (i32.add (call $sq (local.get 0)) (i32.const ${tag})))
       (@custom "worker" "${worker}"))`,
  ];
}

// What race.f(6) returns when race.sq is bound to worker `sq`'s module and race.f to
// worker `f`'s.
export const raceExpected = (sq, f) => 36 + 10 * raceTag(sq) + raceTag(f);
