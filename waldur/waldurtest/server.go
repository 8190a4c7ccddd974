// Package waldurtest provides an in-memory fake of the Waldur REST endpoints
// used by package waldur, for tests.
package waldurtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/eventfn/eventfn/waldur"
)

// Call is one request the server received.
type Call struct {
	Method string
	Path   string // URL path, e.g. "/api/marketplace-orders/<hex>/"
	Query  url.Values
	Header http.Header
	Body   any // decoded JSON body, nil when empty or not JSON
	Status int // status the server answered
}

// BackendResourceRequest is the server-side state of a backend resource request.
type BackendResourceRequest struct {
	UUID         string
	State        string // Sent, Processing, Done, Erred
	ErrorMessage string
}

// Backend resource request states.
const (
	RequestSent       = "Sent"
	RequestProcessing = "Processing"
	RequestDone       = "Done"
	RequestErred      = "Erred"
)

type queueKey struct{ sub, offering, objectType string }

type failure struct{ status, left int }

// Server is a fake Waldur API. Create it with NewServer and Close it when done.
// Its URL (e.g. "http://127.0.0.1:1234") is what waldur.New expects.
type Server struct {
	*httptest.Server
	// Token is the only API token accepted. Read-only after NewServer.
	Token string
	// UserUUID is the token owner's UUID (32 hex), the broker vhost.
	// Read-only after NewServer.
	UserUUID string

	mu            sync.Mutex
	calls         []Call
	failures      map[string]*failure
	identities    map[string]*waldur.AgentIdentity
	subscriptions map[string]*waldur.EventSubscription // by object type (one user)
	queues        map[queueKey]*waldur.SubscriptionQueue
	agentQueues   map[string]*waldur.AgentQueue // by identity
	orders        map[string]*waldur.Order
	orderIDs      []string // in the order they were first added
	resources     map[string]*waldur.ProviderResource
	teams         map[string][]waldur.TeamMember
	requests      map[string]*BackendResourceRequest
}

// NewServer starts a fake Waldur accepting token.
func NewServer(token string) *Server {
	s := &Server{
		Token:         token,
		UserUUID:      NewUUID(),
		failures:      map[string]*failure{},
		identities:    map[string]*waldur.AgentIdentity{},
		subscriptions: map[string]*waldur.EventSubscription{},
		queues:        map[queueKey]*waldur.SubscriptionQueue{},
		agentQueues:   map[string]*waldur.AgentQueue{},
		orders:        map[string]*waldur.Order{},
		resources:     map[string]*waldur.ProviderResource{},
		teams:         map[string][]waldur.TeamMember{},
		requests:      map[string]*BackendResourceRequest{},
	}
	mux := http.NewServeMux()
	routes := map[string]func(*http.Request, map[string]any) (int, any){
		"GET /api/marketplace-site-agent-identities/{$}":                                     s.listIdentities,
		"POST /api/marketplace-site-agent-identities/{$}":                                    s.createIdentity,
		"PUT /api/marketplace-site-agent-identities/{uuid}/{$}":                              s.updateIdentity,
		"POST /api/marketplace-site-agent-identities/{uuid}/register_event_subscription/{$}": s.registerSubscription,
		"POST /api/marketplace-site-agent-identities/{uuid}/register_queue/{$}":              s.registerQueue,
		"POST /api/event-subscriptions/{uuid}/create_queue/{$}":                              s.createQueue,
		"GET /api/marketplace-orders/{$}":                                                    s.listOrders,
		"GET /api/marketplace-orders/{uuid}/{$}":                                             s.getOrder,
		"POST /api/marketplace-orders/{uuid}/{action}/{$}":                                   s.orderAction,
		"GET /api/marketplace-provider-resources/{uuid}/{$}":                                 s.getResource,
		"GET /api/marketplace-provider-resources/{uuid}/team/{$}":                            s.getTeam,
		"POST /api/marketplace-provider-resources/{uuid}/{action}/{$}":                       s.resourceAction,
		"GET /api/backend-resource-requests/{uuid}/{$}":                                      s.getRequest,
		"POST /api/backend-resource-requests/{uuid}/{action}/{$}":                            s.requestAction,
	}
	for pattern, h := range routes {
		mux.HandleFunc(pattern, s.wrap(h))
	}
	mux.HandleFunc("/", s.wrap(func(*http.Request, map[string]any) (int, any) {
		return http.StatusNotFound, detail("Not found.")
	}))
	s.Server = httptest.NewServer(mux)
	return s
}

// NewUUID returns a random UUID as 32 hex digits.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

func detail(msg string) map[string]string { return map[string]string{"detail": msg} }

// wrap records the call, checks the token, applies injected failures and
// writes the handler's answer as JSON.
func (s *Server) wrap(h func(*http.Request, map[string]any) (int, any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		call := Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone()}
		var body map[string]any
		status, out := func() (int, any) {
			var raw any
			if err := json.NewDecoder(r.Body).Decode(&raw); err == nil {
				call.Body = raw
				body, _ = raw.(map[string]any)
			}
			if r.Header.Get("Authorization") != "Token "+s.Token {
				return http.StatusUnauthorized, detail("Invalid token.")
			}
			s.mu.Lock()
			f := s.failures[r.URL.Path]
			if f != nil && f.left > 0 {
				f.left--
				s.mu.Unlock()
				return f.status, detail("injected failure")
			}
			s.mu.Unlock()
			if body == nil {
				body = map[string]any{}
			}
			return h(r, body)
		}()
		call.Status = status
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.mu.Unlock()

		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if out != nil {
			_ = json.NewEncoder(w).Encode(out)
		}
	}
}

// Calls returns a copy of the calls received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Reset forgets recorded calls and pending injected failures (not state).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	clear(s.failures)
}

// FailNext answers status to the next n requests for path. path is the URL
// path ("/api/marketplace-orders/<hex>/set_state_done/"); a path without a
// leading slash is taken relative to "/api/".
func (s *Server) FailNext(path string, status, n int) {
	if !strings.HasPrefix(path, "/") {
		path = "/api/" + path
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[path] = &failure{status: status, left: n}
}

// AddOrder seeds an order. A missing UUID is generated, a missing state is
// pending-provider and a missing type is Create. It returns the stored order.
func (s *Server) AddOrder(o waldur.Order) waldur.Order {
	o.UUID = uuidOrNew(o.UUID)
	if o.State == "" {
		o.State = waldur.OrderPendingProvider
	}
	if o.Type == "" {
		o.Type = "Create"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.orders[o.UUID]; !ok {
		s.orderIDs = append(s.orderIDs, o.UUID)
	}
	s.orders[o.UUID] = &o
	return o
}

// Order returns the current state of an order.
func (s *Server) Order(uuid string) (waldur.Order, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[waldur.NormalizeUUID(uuid)]
	if !ok {
		return waldur.Order{}, false
	}
	return *o, true
}

// AddResource seeds a provider resource and its project team. A missing UUID
// is generated and a missing state is OK.
func (s *Server) AddResource(r waldur.ProviderResource, team ...waldur.TeamMember) waldur.ProviderResource {
	r.UUID = uuidOrNew(r.UUID)
	if r.State == "" {
		r.State = "OK"
	}
	r.Limits = maps.Clone(r.Limits)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resources[r.UUID] = &r
	s.teams[r.UUID] = slices.Clone(team)
	return r
}

// Resource returns the current state of a provider resource.
func (s *Server) Resource(uuid string) (waldur.ProviderResource, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.resources[waldur.NormalizeUUID(uuid)]
	if !ok {
		return waldur.ProviderResource{}, false
	}
	return *r, true
}

// AddBackendResourceRequest seeds a backend resource request in state Sent and
// returns its UUID.
func (s *Server) AddBackendResourceRequest() string {
	id := NewUUID()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[id] = &BackendResourceRequest{UUID: id, State: RequestSent}
	return id
}

// BackendResourceRequest returns the current state of a backend resource request.
func (s *Server) BackendResourceRequest(uuid string) (BackendResourceRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[waldur.NormalizeUUID(uuid)]
	if !ok {
		return BackendResourceRequest{}, false
	}
	return *r, true
}

// Identities returns the registered agent identities.
func (s *Server) Identities() []waldur.AgentIdentity {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]waldur.AgentIdentity, 0, len(s.identities))
	for _, id := range s.identities {
		out = append(out, *id)
	}
	return out
}

func uuidOrNew(id string) string {
	if id == "" {
		return NewUUID()
	}
	return waldur.NormalizeUUID(id)
}

// pathUUID returns the normalised {uuid} of the request, "" when malformed.
func pathUUID(r *http.Request) string {
	id := r.PathValue("uuid")
	if !waldur.ValidUUID(id) {
		return ""
	}
	return waldur.NormalizeUUID(id)
}

func str(body map[string]any, key string) string {
	v, _ := body[key].(string)
	return v
}

func required(field string) map[string][]string {
	return map[string][]string{field: {"This field is required."}}
}

// --- identities and registration ---

func (s *Server) listIdentities(r *http.Request, _ map[string]any) (int, any) {
	name := strings.ToLower(r.URL.Query().Get("name"))
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []waldur.AgentIdentity{}
	for _, id := range s.identities {
		if strings.Contains(strings.ToLower(id.Name), name) { // Waldur filters with icontains
			out = append(out, *id)
		}
	}
	slices.SortFunc(out, func(a, b waldur.AgentIdentity) int { return strings.Compare(a.Name, b.Name) })
	return http.StatusOK, out
}

func identityFromBody(body map[string]any, id *waldur.AgentIdentity) (int, any) {
	if off := str(body, "offering"); !waldur.ValidUUID(off) {
		return http.StatusBadRequest, required("offering")
	}
	if str(body, "name") == "" {
		return http.StatusBadRequest, required("name")
	}
	var in waldur.AgentIdentity
	b, _ := json.Marshal(body)
	if err := json.Unmarshal(b, &in); err != nil {
		return http.StatusBadRequest, detail(err.Error())
	}
	in.UUID, in.Offering = id.UUID, waldur.NormalizeUUID(in.Offering)
	*id = in
	return 0, nil
}

func (s *Server) createIdentity(_ *http.Request, body map[string]any) (int, any) {
	id := &waldur.AgentIdentity{UUID: NewUUID()}
	if st, out := identityFromBody(body, id); st != 0 {
		return st, out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identities[id.UUID] = id
	return http.StatusCreated, id
}

func (s *Server) updateIdentity(r *http.Request, body map[string]any) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.identities[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	if st, out := identityFromBody(body, id); st != 0 {
		return st, out
	}
	return http.StatusOK, id
}

func (s *Server) registerSubscription(r *http.Request, body map[string]any) (int, any) {
	t := str(body, "observable_object_type")
	if t == "" {
		return http.StatusBadRequest, required("observable_object_type")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.identities[pathUUID(r)]; !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	if sub, ok := s.subscriptions[t]; ok {
		return http.StatusOK, sub
	}
	sub := &waldur.EventSubscription{
		UUID: NewUUID(), UserUUID: s.UserUUID, Description: str(body, "description"),
		ObservableObjects: []waldur.ObservableObject{{ObjectType: t}},
	}
	s.subscriptions[t] = sub
	return http.StatusCreated, sub
}

func (s *Server) createQueue(r *http.Request, body map[string]any) (int, any) {
	off, t := str(body, "offering_uuid"), str(body, "object_type")
	if !waldur.ValidUUID(off) {
		return http.StatusBadRequest, required("offering_uuid")
	}
	subUUID := pathUUID(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	var sub *waldur.EventSubscription
	for _, candidate := range s.subscriptions {
		if candidate.UUID == subUUID {
			sub = candidate
		}
	}
	if sub == nil {
		return http.StatusNotFound, detail("Not found.")
	}
	if !slices.ContainsFunc(sub.ObservableObjects, func(o waldur.ObservableObject) bool { return o.ObjectType == t }) {
		return http.StatusBadRequest, map[string][]string{"object_type": {"Not observed by this subscription."}}
	}
	key := queueKey{sub.UUID, waldur.NormalizeUUID(off), t}
	if q, ok := s.queues[key]; ok {
		return http.StatusOK, q
	}
	q := &waldur.SubscriptionQueue{
		UUID: NewUUID(), EventSubscriptionUUID: sub.UUID, OfferingUUID: key.offering, ObjectType: t,
		QueueName: waldur.QueueName(sub.UUID, key.offering, t), VHost: s.UserUUID,
	}
	s.queues[key] = q
	return http.StatusCreated, q
}

func (s *Server) registerQueue(r *http.Request, body map[string]any) (int, any) {
	var types []string
	if raw, ok := body["object_types"].([]any); ok {
		for _, v := range raw {
			if t, ok := v.(string); ok {
				types = append(types, t)
			}
		}
	}
	if len(types) == 0 {
		types = waldur.ObjectTypes()
	}
	id := pathUUID(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.identities[id]; !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	if q, ok := s.agentQueues[id]; ok {
		q.ObservableObjectTypes = types
		return http.StatusOK, q
	}
	consumer := NewUUID()
	q := &waldur.AgentQueue{
		RMQUsername: consumer, QueueName: "consumer_" + consumer, VHost: s.UserUUID, ObservableObjectTypes: types,
	}
	s.agentQueues[id] = q
	return http.StatusCreated, q
}

// --- orders ---

// listOrders lists the orders in the order they were added, filtered as
// Waldur filters them by offering_uuid and state (each given state
// matches); other parameters (page_size, modified_before, …) are ignored.
func (s *Server) listOrders(r *http.Request, _ map[string]any) (int, any) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []waldur.Order{}
	for _, id := range s.orderIDs {
		o := s.orders[id]
		if (q.Has("offering_uuid") && waldur.NormalizeUUID(q.Get("offering_uuid")) != waldur.NormalizeUUID(o.OfferingUUID)) ||
			(q.Has("state") && !slices.Contains(q["state"], o.State)) {
			continue
		}
		out = append(out, *o)
	}
	return http.StatusOK, out
}

func (s *Server) getOrder(r *http.Request, _ map[string]any) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	return http.StatusOK, o
}

// orderTransition gives the states an order action is allowed from and the
// state it leads to.
func orderTransition(action string) (from []string, to string, ok bool) {
	switch action {
	case "approve_by_provider":
		return []string{waldur.OrderPendingProvider}, waldur.OrderExecuting, true
	case "reject_by_provider":
		return []string{waldur.OrderPendingProvider}, waldur.OrderRejected, true
	case "set_state_done":
		return []string{waldur.OrderExecuting}, waldur.OrderDone, true
	case "set_state_erred":
		return []string{waldur.OrderPendingConsumer, waldur.OrderPendingProvider, waldur.OrderPendingProject,
			waldur.OrderPendingStartDate, waldur.OrderExecuting}, waldur.OrderErred, true
	}
	return nil, "", false
}

func (s *Server) orderAction(r *http.Request, body map[string]any) (int, any) {
	from, to, ok := orderTransition(r.PathValue("action"))
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	if !slices.Contains(from, o.State) {
		return http.StatusConflict, detail("Invalid order state: " + o.State)
	}
	o.State = to
	if to == waldur.OrderErred {
		o.ErrorMessage, o.ErrorTraceback = str(body, "error_message"), str(body, "error_traceback")
	}
	return http.StatusOK, nil
}

// --- provider resources ---

func (s *Server) getResource(r *http.Request, _ map[string]any) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := s.resources[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	return http.StatusOK, res
}

func (s *Server) getTeam(r *http.Request, _ map[string]any) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := pathUUID(r)
	if _, ok := s.resources[id]; !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	team := s.teams[id]
	if team == nil {
		team = []waldur.TeamMember{}
	}
	return http.StatusOK, team
}

func (s *Server) resourceAction(r *http.Request, body map[string]any) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := s.resources[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	switch r.PathValue("action") {
	case "set_backend_id":
		id, ok := body["backend_id"].(string)
		if !ok {
			return http.StatusBadRequest, required("backend_id")
		}
		res.BackendID = id
		return http.StatusOK, map[string]string{"status": "Resource backend_id has been changed."}
	case "set_limits":
		limits, ok := body["limits"].(map[string]any)
		if !ok {
			return http.StatusBadRequest, required("limits")
		}
		res.Limits = limits
		return http.StatusOK, map[string]string{"status": "Resource limits have been changed."}
	case "set_as_erred":
		res.State = "Erred"
		return http.StatusOK, nil
	}
	return http.StatusNotFound, detail("Not found.")
}

// --- backend resource requests ---

// requestTransition is orderTransition for backend resource requests.
func requestTransition(action string) (from []string, to string, ok bool) {
	switch action {
	case "start_processing":
		return []string{RequestSent}, RequestProcessing, true
	case "set_done":
		return []string{RequestProcessing}, RequestDone, true
	case "set_erred":
		return []string{RequestSent, RequestProcessing}, RequestErred, true
	}
	return nil, "", false
}

func (s *Server) getRequest(r *http.Request, _ map[string]any) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	return http.StatusOK, map[string]any{"uuid": req.UUID, "state": req.State}
}

func (s *Server) requestAction(r *http.Request, body map[string]any) (int, any) {
	from, to, ok := requestTransition(r.PathValue("action"))
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[pathUUID(r)]
	if !ok {
		return http.StatusNotFound, detail("Not found.")
	}
	if !slices.Contains(from, req.State) {
		return http.StatusConflict, detail("Invalid request state: " + req.State)
	}
	req.State = to
	if to == RequestErred {
		req.ErrorMessage = str(body, "error_message")
	}
	return http.StatusOK, map[string]string{"status": "OK"}
}
