;; Spins forever: the epoch deadline must stop it.
(module
  (func (export "_start") (loop $l (br $l)))
  (memory (export "memory") 1))
