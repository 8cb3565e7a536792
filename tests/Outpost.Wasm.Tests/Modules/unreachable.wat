(module
  (func (export "_start") unreachable)
  (memory (export "memory") 1))
