;; A component of WASI 0.3 (a release candidate): its version is named, not just refused.
(component
  (import "wasi:clocks/monotonic-clock@0.3.0-rc-2025-09-16" (instance (export "now" (func (result u64)))))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $exports (export "run" (func $run)))
  (export "wasi:cli/run@0.3.0-rc-2025-09-16" (instance $exports))
)
