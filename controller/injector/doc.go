// Package injector is the proxy-injector admission webhook: for a pod that
// asks to be meshed (meshctl.io/inject: enabled on the pod or its namespace),
// it adds the redirect-rules init container, the proxy as a native sidecar
// started before everything else, the identity token and trust bundle
// volumes, and the mesh's labels. The decision and the changes are a pure
// function, install/podpatch's Patch (which `meshctl inject --manual` uses
// too), golden-tested on fixture pods; the HTTP side only decodes
// AdmissionReviews and encodes JSON patches.
package injector
