;; Calls WASI file functions with pointers outside its one page of memory, and exits with
;; the errno each returned, packed: path_open's in bits 0-7, fd_read's (of an open file)
;; in 8-15, poll_oneoff's in 16-23, and fd_read's with an iovec count so large that its array
;; would wrap around in 24-31. A host that checks guest pointers returns FAULT (21) for the first
;; three and INVAL (28, as Linux for more than IOV_MAX) for the last, and stays up.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello.txt")
  (func (export "_start")
    (local $bad_open i32) (local $bad_read i32) (local $bad_poll i32) (local $many i32)
    ;; path_open(3, follow, path=0xFFFFF0 len 16, ...) : the path is past the memory's end
    (local.set $bad_open (call $path_open (i32.const 3) (i32.const 1) (i32.const 0xFFFF0) (i32.const 16)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
    ;; open hello.txt for real (fd written at 64), then read into an iovec pointing far outside
    (drop (call $path_open (i32.const 3) (i32.const 1) (i32.const 16) (i32.const 9)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64)))
    (i32.store (i32.const 128) (i32.const 0x7FFFFF00)) ;; iov.buf
    (i32.store (i32.const 132) (i32.const 4096))       ;; iov.len
    (local.set $bad_read (call $fd_read (i32.load (i32.const 64)) (i32.const 128) (i32.const 1) (i32.const 200)))
    ;; poll_oneoff with its subscriptions past the end
    (local.set $bad_poll (call $poll (i32.const 0xFFF0) (i32.const 256) (i32.const 4) (i32.const 300)))
    ;; fd_read with 0x20000001 iovecs: 8 times that wraps to 8 bytes in 32 bits
    (local.set $many (call $fd_read (i32.load (i32.const 64)) (i32.const 128) (i32.const 0x20000001) (i32.const 200)))
    (call $exit (i32.or (i32.or (local.get $bad_open) (i32.shl (local.get $many) (i32.const 24)))
      (i32.or (i32.shl (local.get $bad_read) (i32.const 8)) (i32.shl (local.get $bad_poll) (i32.const 16)))))))
