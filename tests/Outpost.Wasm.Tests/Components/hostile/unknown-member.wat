;; Imports wasi:http/types with a function WASI 0.2 does not have.
(component
  (import "wasi:http/types@0.2.0" (instance (export "frobnicate" (func))))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $exports (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $exports))
)
