// Package podpatch is what injecting the proxy does to a pod, as a pure
// function shared by the proxy-injector webhook (controller/injector) and
// `meshctl inject --manual`: Patch decides whether a pod wants the mesh and
// adds the redirect-rules init container, the proxy as a native sidecar
// started before everything else, the identity token and trust bundle
// volumes and the mesh's labels; Unpatch and HasProxy undo and recognise
// it. It is golden-tested on fixture pods (testdata).
package podpatch
