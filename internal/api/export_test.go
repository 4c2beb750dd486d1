package api

// RouteScope is one route of routes.go with the scope it requires ("" for
// public routes).
type RouteScope struct{ Method, Path, Scope string }

// RouteScopes lists routes.go for the tests of package api_test, which need
// the whole route table to check every route's scope rule.
func RouteScopes() []RouteScope {
	var out []RouteScope
	for _, r := range NewServer(Deps{}).routes() {
		out = append(out, RouteScope{Method: r.method, Path: r.path, Scope: r.scope})
	}
	return out
}
