;; On each event, adds one to bucket "events" key "tally" (a single byte).
(module
  (import "outpost" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "outpost" "kv_set" (func $kv_set (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "events")
  (data (i32.const 16) "tally")
  (func (export "_start")
    (if (i32.eq (call $kv_get (i32.const 0) (i32.const 6) (i32.const 16) (i32.const 5) (i32.const 100) (i32.const 1)) (i32.const -1))
      (then (i32.store8 (i32.const 100) (i32.const 0))))
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (drop (call $kv_set (i32.const 0) (i32.const 6) (i32.const 16) (i32.const 5) (i32.const 100) (i32.const 1)))))
