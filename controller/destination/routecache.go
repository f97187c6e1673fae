package destination

import (
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// translatedRoute is a route as read from an informer, with its
// translation, for one resourceVersion. It keeps only what routesFor
// needs (meshRoute, Translation): not the typed route, its metadata or its
// spec, which a cache of every route would hold for as long as it lives.
type translatedRoute struct {
	filled          bool // false: tracked, not translated yet
	resourceVersion string
	route           meshRoute
	translation     Translation
}

// routeCache keeps each route's translation until the route changes, so
// that a resolve reads and translates only the routes that changed since
// the last one (a Service with many routes, or many proxies resolving it,
// costs a map lookup per route). Only routes the informer announced are
// kept (track), and their entries go when they are deleted (forget), so a
// resolve racing a deletion cannot leave an entry behind.
type routeCache struct {
	mu    sync.Mutex
	byUID map[types.UID]translatedRoute
	// translations counts the routes read and translated (cache misses).
	translations atomic.Int64
}

func newRouteCache() *routeCache {
	return &routeCache{byUID: map[types.UID]translatedRoute{}}
}

// get returns an informer object's route and translation, translating it
// only when its resourceVersion is new.
func (c *routeCache) get(obj any) (meshRoute, Translation, bool) {
	u, ok := tombstone(obj).(*unstructured.Unstructured)
	if !ok {
		return meshRoute{}, Translation{}, false
	}
	uid, rv := u.GetUID(), u.GetResourceVersion()
	if uid != "" {
		c.mu.Lock()
		e, hit := c.byUID[uid]
		c.mu.Unlock()
		if hit && e.filled && rv != "" && e.resourceVersion == rv {
			return e.route, e.translation, true
		}
	}
	r, translate, ok := readRoute(u)
	if !ok {
		return meshRoute{}, Translation{}, false
	}
	t := translate()
	c.translations.Add(1)
	if uid != "" {
		c.mu.Lock()
		if _, live := c.byUID[uid]; live {
			c.byUID[uid] = translatedRoute{filled: true, resourceVersion: rv, route: r, translation: t}
		}
		c.mu.Unlock()
	}
	return r, t, true
}

// track makes room for a route the informer added or updated.
func (c *routeCache) track(obj any) {
	if u, ok := tombstone(obj).(*unstructured.Unstructured); ok && u.GetUID() != "" {
		c.mu.Lock()
		if _, live := c.byUID[u.GetUID()]; !live {
			c.byUID[u.GetUID()] = translatedRoute{}
		}
		c.mu.Unlock()
	}
}

// forget drops a deleted route's entry.
func (c *routeCache) forget(obj any) {
	if u, ok := tombstone(obj).(*unstructured.Unstructured); ok {
		c.mu.Lock()
		delete(c.byUID, u.GetUID())
		c.mu.Unlock()
	}
}

// len is how many routes the cache holds.
func (c *routeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byUID)
}
