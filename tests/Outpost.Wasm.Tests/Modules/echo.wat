;; Copies stdin to stdout after a CGI header: reads with fd_read, writes with fd_write.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Content-Type: text/plain\nStatus: 201\n\n")
  (func (export "_start")
    ;; header: iov at 100 -> (0, 38)
    (i32.store (i32.const 100) (i32.const 0))
    (i32.store (i32.const 104) (i32.const 38))
    (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 120)))
    ;; body: read up to 4096 bytes at 1024, then write them
    (i32.store (i32.const 100) (i32.const 1024))
    (i32.store (i32.const 104) (i32.const 4096))
    (drop (call $fd_read (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 120)))
    (i32.store (i32.const 104) (i32.load (i32.const 120)))
    (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 120)))))
