package api

import (
	"net/http"
	"slices"
)

// Scope says which principals may call a route.
type Scope string

// Route scopes.
const (
	ScopeOperator Scope = "operator" // the operator only
	ScopeTenant   Scope = "tenant"   // the operator, or the ISP named by {isp}
	ScopeISPs     Scope = "isps"     // the operator (every ISP) or an ISP (its own entry)
	ScopeClaim    Scope = "claim"    // the operator or a claim token
)

// Route is one endpoint: its method, its path pattern (net/http.ServeMux
// and OpenAPI spell wildcards alike: {isp}, {id}, {mac}), its scope and
// the query parameters it takes (any other is 400 bad-request, so a typo
// such as ?afer= is not read as no parameter).
type Route struct {
	Method string
	Path   string
	Scope  Scope
	Query  []string
	h      handlerFunc
}

// The query parameters of the routes that take some.
var (
	qList     = []string{"after", "limit"}
	qDevices  = []string{"after", "limit", "customer_id"}
	qBindings = []string{"after", "limit", "mac"}
	qEvents   = []string{"after", "limit", "mac"}
	qStream   = []string{"after"}
)

type handlerFunc func(s *Server, w http.ResponseWriter, r *http.Request, c *call)

// routes is the route table: ServeMux registration, the docs test and
// Routes all read it.
var routes = []Route{
	{"GET", "/v1/isps", ScopeISPs, nil, (*Server).listISPs},
	{"GET", "/v1/isps/{isp}", ScopeTenant, nil, (*Server).getISP},
	// An ISP no longer configured: no tenant route reaches it.
	{"DELETE", "/v1/isps/{isp}", ScopeOperator, nil, (*Server).purgeISP},

	{"GET", "/v1/isps/{isp}/customers", ScopeTenant, qList, (*Server).listCustomers},
	{"POST", "/v1/isps/{isp}/customers", ScopeTenant, nil, (*Server).createCustomer},
	{"POST", "/v1/isps/{isp}/customers:import", ScopeTenant, nil, (*Server).importCustomers},
	{"GET", "/v1/isps/{isp}/customers/{id}", ScopeTenant, nil, (*Server).getCustomer},
	{"PATCH", "/v1/isps/{isp}/customers/{id}", ScopeTenant, nil, (*Server).updateCustomer},
	{"DELETE", "/v1/isps/{isp}/customers/{id}", ScopeTenant, nil, (*Server).deleteCustomer},

	{"GET", "/v1/isps/{isp}/devices", ScopeTenant, qDevices, (*Server).listDevices},
	{"POST", "/v1/isps/{isp}/devices", ScopeTenant, nil, (*Server).attachDevice},
	{"POST", "/v1/isps/{isp}/devices:import", ScopeTenant, nil, (*Server).importDevices},
	{"GET", "/v1/isps/{isp}/devices/{mac}", ScopeTenant, nil, (*Server).getDevice},
	{"PATCH", "/v1/isps/{isp}/devices/{mac}", ScopeTenant, nil, (*Server).updateDevice},
	{"DELETE", "/v1/isps/{isp}/devices/{mac}", ScopeTenant, nil, (*Server).detachDevice},

	{"GET", "/v1/isps/{isp}/bindings", ScopeTenant, qBindings, (*Server).listBindings},
	{"GET", "/v1/isps/{isp}/events", ScopeTenant, qEvents, (*Server).listEvents},
	{"GET", "/v1/isps/{isp}/events/stream", ScopeTenant, qStream, (*Server).streamEvents},
	{"GET", "/v1/isps/{isp}/webhook", ScopeTenant, nil, (*Server).getWebhook},

	{"POST", "/v1/claims", ScopeClaim, nil, (*Server).claim},

	{"GET", "/v1/devices", ScopeOperator, qDevices, (*Server).listDevices},
	{"GET", "/v1/devices/{mac}", ScopeOperator, nil, (*Server).getDevice},
	{"PATCH", "/v1/devices/{mac}", ScopeOperator, nil, (*Server).updateDevice},
	{"POST", "/v1/devices/{mac}/block", ScopeOperator, nil, (*Server).block},
	{"POST", "/v1/devices/{mac}/unblock", ScopeOperator, nil, (*Server).unblock},
	{"POST", "/v1/devices/{mac}/move", ScopeOperator, nil, (*Server).move},

	{"GET", "/v1/bindings", ScopeOperator, qBindings, (*Server).listBindings},
	{"GET", "/v1/events", ScopeOperator, qEvents, (*Server).listEvents},
	{"GET", "/v1/events/stream", ScopeOperator, qStream, (*Server).streamEvents},
	{"GET", "/v1/stats", ScopeOperator, nil, (*Server).stats},
}

// Routes returns the served endpoints (without their handlers).
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = Route{Method: r.Method, Path: r.Path, Scope: r.Scope, Query: slices.Clone(r.Query)}
	}
	return out
}
