package api

import "net/http"

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
// and OpenAPI spell wildcards alike: {isp}, {id}, {mac}) and its scope.
type Route struct {
	Method string
	Path   string
	Scope  Scope
	h      handlerFunc
}

type handlerFunc func(s *Server, w http.ResponseWriter, r *http.Request, c *call)

// routes is the route table: ServeMux registration, the docs test and
// Routes all read it.
var routes = []Route{
	{"GET", "/v1/isps", ScopeISPs, (*Server).listISPs},
	{"GET", "/v1/isps/{isp}", ScopeTenant, (*Server).getISP},

	{"GET", "/v1/isps/{isp}/customers", ScopeTenant, (*Server).listCustomers},
	{"POST", "/v1/isps/{isp}/customers", ScopeTenant, (*Server).createCustomer},
	{"POST", "/v1/isps/{isp}/customers:import", ScopeTenant, (*Server).importCustomers},
	{"GET", "/v1/isps/{isp}/customers/{id}", ScopeTenant, (*Server).getCustomer},
	{"PATCH", "/v1/isps/{isp}/customers/{id}", ScopeTenant, (*Server).updateCustomer},
	{"DELETE", "/v1/isps/{isp}/customers/{id}", ScopeTenant, (*Server).deleteCustomer},

	{"GET", "/v1/isps/{isp}/devices", ScopeTenant, (*Server).listDevices},
	{"POST", "/v1/isps/{isp}/devices", ScopeTenant, (*Server).attachDevice},
	{"GET", "/v1/isps/{isp}/devices/{mac}", ScopeTenant, (*Server).getDevice},
	{"PATCH", "/v1/isps/{isp}/devices/{mac}", ScopeTenant, (*Server).updateDevice},
	{"DELETE", "/v1/isps/{isp}/devices/{mac}", ScopeTenant, (*Server).detachDevice},

	{"GET", "/v1/isps/{isp}/bindings", ScopeTenant, (*Server).listBindings},
	{"GET", "/v1/isps/{isp}/events", ScopeTenant, (*Server).listEvents},
	{"GET", "/v1/isps/{isp}/events/stream", ScopeTenant, (*Server).streamEvents},
	{"GET", "/v1/isps/{isp}/webhook", ScopeTenant, (*Server).getWebhook},

	{"POST", "/v1/claims", ScopeClaim, (*Server).claim},

	{"GET", "/v1/devices", ScopeOperator, (*Server).listDevices},
	{"GET", "/v1/devices/{mac}", ScopeOperator, (*Server).getDevice},
	{"PATCH", "/v1/devices/{mac}", ScopeOperator, (*Server).updateDevice},
	{"POST", "/v1/devices/{mac}/block", ScopeOperator, (*Server).block},
	{"POST", "/v1/devices/{mac}/unblock", ScopeOperator, (*Server).unblock},
	{"POST", "/v1/devices/{mac}/move", ScopeOperator, (*Server).move},

	{"GET", "/v1/bindings", ScopeOperator, (*Server).listBindings},
	{"GET", "/v1/events", ScopeOperator, (*Server).listEvents},
	{"GET", "/v1/events/stream", ScopeOperator, (*Server).streamEvents},
	{"GET", "/v1/stats", ScopeOperator, (*Server).stats},
}

// Routes returns the served endpoints (without their handlers).
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = Route{Method: r.Method, Path: r.Path, Scope: r.Scope}
	}
	return out
}
