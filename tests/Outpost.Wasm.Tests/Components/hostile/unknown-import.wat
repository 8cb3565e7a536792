;; A proxy component that also imports an interface Outpost does not provide.
(component
  (import "acme:weather/forecast@1.0.0" (instance (export "today" (func (result string)))))
  (type $handler (instance (export "handle" (func))))
  (core module $m (func (export "handle")))
  (core instance $i (instantiate $m))
  (func $handle (canon lift (core func $i "handle")))
  (instance $exports (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $exports))
)
