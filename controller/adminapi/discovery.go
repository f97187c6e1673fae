package adminapi

import (
	"encoding/json"
	"net/http"

	"github.com/meshctl/meshctl/internal/meshnames"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// groupDoc is the API group as discovery describes it.
func groupDoc() metav1.APIGroup {
	v := metav1.GroupVersionForDiscovery{GroupVersion: meshnames.AdminGroupVersion, Version: meshnames.AdminVersion}
	return metav1.APIGroup{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:     meshnames.AdminGroup, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v,
	}
}

// discovery returns the document for a discovery path, or nil when path is none.
func discovery(path string) any {
	switch path {
	case "/apis", "/apis/":
		return metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{groupDoc()}}
	case "/apis/" + meshnames.AdminGroup, "/apis/" + meshnames.AdminGroup + "/":
		return groupDoc()
	case "/apis/" + meshnames.AdminGroupVersion, "/apis/" + meshnames.AdminGroupVersion + "/":
		list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: meshnames.AdminGroupVersion}
		for _, s := range subresources {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: meshnames.AdminResource + "/" + s.name, Namespaced: true, Kind: s.kind, Verbs: s.verbs,
			})
		}
		return list
	}
	return nil
}

// writeJSON answers v as JSON with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
