(module
  (import "env" "open_socket" (func $s (result i32)))
  (func (export "_start") (drop (call $s)))
  (memory (export "memory") 1))
