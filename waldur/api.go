package waldur

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Order is a marketplace order (GET marketplace-orders/{uuid}/). Raw holds
// every field the server sent.
type Order struct {
	UUID                    string         `json:"uuid"`
	State                   string         `json:"state"`
	Type                    string         `json:"type"` // Create, Update, Terminate
	OfferingUUID            string         `json:"offering_uuid,omitempty"`
	OfferingType            string         `json:"offering_type,omitempty"`
	ResourceUUID            string         `json:"resource_uuid,omitempty"`
	MarketplaceResourceUUID string         `json:"marketplace_resource_uuid,omitempty"`
	ResourceName            string         `json:"resource_name,omitempty"`
	ProjectUUID             string         `json:"project_uuid,omitempty"`
	ProjectSlug             string         `json:"project_slug,omitempty"`
	CustomerUUID            string         `json:"customer_uuid,omitempty"`
	CustomerSlug            string         `json:"customer_slug,omitempty"`
	PlanUUID                string         `json:"plan_uuid,omitempty"`
	Attributes              map[string]any `json:"attributes,omitempty"`
	Limits                  map[string]any `json:"limits,omitempty"`
	BackendID               string         `json:"backend_id,omitempty"`
	ErrorMessage            string         `json:"error_message,omitempty"`
	ErrorTraceback          string         `json:"error_traceback,omitempty"`
	Raw                     map[string]any `json:"-"`
}

// Order states.
const (
	OrderPendingConsumer  = "pending-consumer"
	OrderPendingProvider  = "pending-provider"
	OrderPendingProject   = "pending-project"
	OrderPendingStartDate = "pending-start-date"
	OrderExecuting        = "executing"
	OrderDone             = "done"
	OrderErred            = "erred"
	OrderCanceled         = "canceled"
	OrderRejected         = "rejected"
)

// ProviderResource is a marketplace resource as its provider sees it
// (GET marketplace-provider-resources/{uuid}/).
type ProviderResource struct {
	UUID                 string         `json:"uuid"`
	Name                 string         `json:"name,omitempty"`
	Slug                 string         `json:"slug,omitempty"`
	State                string         `json:"state,omitempty"`
	BackendID            string         `json:"backend_id,omitempty"`
	OfferingUUID         string         `json:"offering_uuid,omitempty"`
	ProjectUUID          string         `json:"project_uuid,omitempty"`
	ProjectSlug          string         `json:"project_slug,omitempty"`
	CustomerUUID         string         `json:"customer_uuid,omitempty"`
	CustomerSlug         string         `json:"customer_slug,omitempty"`
	Limits               map[string]any `json:"limits,omitempty"`
	Attributes           map[string]any `json:"attributes,omitempty"`
	Paused               bool           `json:"paused,omitempty"`
	Downscaled           bool           `json:"downscaled,omitempty"`
	RestrictMemberAccess bool           `json:"restrict_member_access,omitempty"`
	Raw                  map[string]any `json:"-"`
}

// TeamMember is one user of a resource's project
// (GET marketplace-provider-resources/{uuid}/team/).
type TeamMember struct {
	UUID                 string `json:"uuid"`
	Username             string `json:"username"`
	FullName             string `json:"full_name,omitempty"`
	Email                string `json:"email,omitempty"`
	Role                 string `json:"role,omitempty"`
	OfferingUserUsername string `json:"offering_user_username,omitempty"`
	ExpirationTime       string `json:"expiration_time,omitempty"`
}

// Dependency is a package an agent reports in its identity.
type Dependency struct {
	Package string `json:"package"`
	Version string `json:"version"`
}

// AgentIdentity is a marketplace site agent identity.
type AgentIdentity struct {
	UUID              string       `json:"uuid"`
	Name              string       `json:"name"`
	Offering          string       `json:"offering"`
	Version           string       `json:"version,omitempty"`
	LastRestarted     string       `json:"last_restarted,omitempty"`
	Dependencies      []Dependency `json:"dependencies,omitempty"`
	ConfigFilePath    string       `json:"config_file_path,omitempty"`
	ConfigFileContent string       `json:"config_file_content,omitempty"`
	Created           bool         `json:"-"` // the call created it (201)
}

// ObservableObject is one entry of an event subscription's observable_objects.
type ObservableObject struct {
	ObjectType string `json:"object_type"`
	ObjectID   *int64 `json:"object_id,omitempty"`
}

// EventSubscription is what register_event_subscription returns. Waldur keys
// it by (user, object type): agents sharing a token share it.
type EventSubscription struct {
	UUID              string             `json:"uuid"`
	UserUUID          string             `json:"user_uuid"`
	Description       string             `json:"description,omitempty"`
	ObservableObjects []ObservableObject `json:"observable_objects,omitempty"`
	Created           bool               `json:"-"` // the call created it (201)
}

// SubscriptionQueue is a per-(offering, type) RabbitMQ queue (path 1a).
type SubscriptionQueue struct {
	UUID                  string `json:"uuid"`
	EventSubscriptionUUID string `json:"event_subscription_uuid,omitempty"`
	OfferingUUID          string `json:"offering_uuid"`
	ObjectType            string `json:"object_type"`
	QueueName             string `json:"queue_name"`
	VHost                 string `json:"vhost"`
	Created               bool   `json:"-"` // the call created it (201)
}

// AgentQueue is the single queue of an agent identity (path 1b). Log in as
// RMQUsername with the API token as passcode.
type AgentQueue struct {
	RMQUsername           string   `json:"rmq_username"`
	QueueName             string   `json:"queue_name"`
	VHost                 string   `json:"vhost"`
	ObservableObjectTypes []string `json:"observable_object_types"`
}

// call runs Do and decodes a JSON answer into out (when out is not nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any) (*Response, error) {
	resp, err := c.Do(ctx, method, path, query, body)
	if err != nil {
		return resp, err
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp, fmt.Errorf("waldur: %s %s: decode response: %w", method, path, err)
		}
	}
	return resp, nil
}

// objectPath builds "{collection}/{uuid hex}/{action/}" after validating uuid.
func objectPath(collection, uuid, action string) (string, error) {
	id, err := checkUUID(collection, uuid)
	if err != nil {
		return "", err
	}
	p := collection + "/" + id + "/"
	if action != "" {
		p += action + "/"
	}
	return p, nil
}

// post sends a POST to an object action, discarding the answer.
func (c *Client) post(ctx context.Context, collection, uuid, action string, body any) error {
	p, err := objectPath(collection, uuid, action)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, http.MethodPost, p, nil, body, nil)
	return err
}

// --- Orders ---

// GetOrder fetches marketplace-orders/{uuid}/.
func (c *Client) GetOrder(ctx context.Context, orderUUID string) (*Order, error) {
	p, err := objectPath("marketplace-orders", orderUUID, "")
	if err != nil {
		return nil, err
	}
	var o Order
	resp, err := c.call(ctx, http.MethodGet, p, nil, nil, &o)
	if err != nil {
		return nil, err
	}
	o.Raw, _ = resp.JSON.(map[string]any)
	return &o, nil
}

// ApproveOrderByProvider moves a pending-provider order to executing.
func (c *Client) ApproveOrderByProvider(ctx context.Context, orderUUID string) error {
	return c.post(ctx, "marketplace-orders", orderUUID, "approve_by_provider", nil)
}

// RejectOrderByProvider rejects a pending-provider order.
func (c *Client) RejectOrderByProvider(ctx context.Context, orderUUID string) error {
	return c.post(ctx, "marketplace-orders", orderUUID, "reject_by_provider", nil)
}

// SetOrderStateDone marks an executing order done.
func (c *Client) SetOrderStateDone(ctx context.Context, orderUUID string) error {
	return c.post(ctx, "marketplace-orders", orderUUID, "set_state_done", nil)
}

// SetOrderStateErred marks an order erred with an error message and traceback.
func (c *Client) SetOrderStateErred(ctx context.Context, orderUUID, errMsg, traceback string) error {
	return c.post(ctx, "marketplace-orders", orderUUID, "set_state_erred",
		map[string]string{"error_message": errMsg, "error_traceback": traceback})
}

// --- Provider resources ---

// GetProviderResource fetches marketplace-provider-resources/{uuid}/.
func (c *Client) GetProviderResource(ctx context.Context, resourceUUID string) (*ProviderResource, error) {
	p, err := objectPath("marketplace-provider-resources", resourceUUID, "")
	if err != nil {
		return nil, err
	}
	var r ProviderResource
	resp, err := c.call(ctx, http.MethodGet, p, nil, nil, &r)
	if err != nil {
		return nil, err
	}
	r.Raw, _ = resp.JSON.(map[string]any)
	return &r, nil
}

// GetResourceTeam lists the users of the resource's project with their roles.
func (c *Client) GetResourceTeam(ctx context.Context, resourceUUID string) ([]TeamMember, error) {
	p, err := objectPath("marketplace-provider-resources", resourceUUID, "team")
	if err != nil {
		return nil, err
	}
	var team []TeamMember
	if _, err := c.call(ctx, http.MethodGet, p, nil, nil, &team); err != nil {
		return nil, err
	}
	return team, nil
}

// SetResourceBackendID records the backend id (e.g. the SLURM account) of a resource.
func (c *Client) SetResourceBackendID(ctx context.Context, resourceUUID, backendID string) error {
	return c.post(ctx, "marketplace-provider-resources", resourceUUID, "set_backend_id",
		map[string]string{"backend_id": backendID})
}

// SetResourceLimits reports the limits applied to a resource.
func (c *Client) SetResourceLimits(ctx context.Context, resourceUUID string, limits map[string]any) error {
	if limits == nil {
		limits = map[string]any{}
	}
	return c.post(ctx, "marketplace-provider-resources", resourceUUID, "set_limits",
		map[string]any{"limits": limits})
}

// --- Backend resource requests (importable resources) ---

// BackendResourceRequestStartProcessing marks a backend resource request processing.
func (c *Client) BackendResourceRequestStartProcessing(ctx context.Context, requestUUID string) error {
	return c.post(ctx, "backend-resource-requests", requestUUID, "start_processing", nil)
}

// BackendResourceRequestSetDone marks a backend resource request done.
func (c *Client) BackendResourceRequestSetDone(ctx context.Context, requestUUID string) error {
	return c.post(ctx, "backend-resource-requests", requestUUID, "set_done", nil)
}

// BackendResourceRequestSetErred marks a backend resource request erred.
func (c *Client) BackendResourceRequestSetErred(ctx context.Context, requestUUID, errMsg string) error {
	return c.post(ctx, "backend-resource-requests", requestUUID, "set_erred",
		map[string]string{"error_message": errMsg})
}

// --- Registration ---

// IdentityOption sets optional fields of an agent identity.
type IdentityOption func(*identityRequest)

type identityRequest struct {
	Offering          string       `json:"offering"`
	Name              string       `json:"name"`
	Version           string       `json:"version"`
	LastRestarted     string       `json:"last_restarted"`
	Dependencies      []Dependency `json:"dependencies"`
	ConfigFilePath    string       `json:"config_file_path"`
	ConfigFileContent string       `json:"config_file_content"`
}

// WithDependencies reports the agent's dependencies.
func WithDependencies(deps ...Dependency) IdentityOption {
	return func(r *identityRequest) { r.Dependencies = append(r.Dependencies, deps...) }
}

// WithConfigFile reports the agent's configuration file path and content.
// Do not pass content holding secrets.
func WithConfigFile(path, content string) IdentityOption {
	return func(r *identityRequest) { r.ConfigFilePath, r.ConfigFileContent = path, content }
}

// WithLastRestarted sets last_restarted (default: now).
func WithLastRestarted(t time.Time) IdentityOption {
	return func(r *identityRequest) { r.LastRestarted = t.UTC().Format(time.RFC3339) }
}

const identitiesPath = "marketplace-site-agent-identities/"

// GetOrCreateAgentIdentity looks the identity up by name and updates it (PUT),
// or creates it (POST) when absent. An empty name means "agent-{offering hex}".
func (c *Client) GetOrCreateAgentIdentity(ctx context.Context, offeringUUID, name, version string, opts ...IdentityOption) (*AgentIdentity, error) {
	off, err := checkUUID("offering", offeringUUID)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = "agent-" + off
	}
	req := identityRequest{
		Offering: off, Name: name, Version: version,
		LastRestarted: time.Now().UTC().Format(time.RFC3339),
		Dependencies:  []Dependency{},
	}
	for _, o := range opts {
		o(&req)
	}

	var found []AgentIdentity
	if _, err := c.call(ctx, http.MethodGet, identitiesPath, url.Values{"name": {name}}, nil, &found); err != nil {
		return nil, fmt.Errorf("look up agent identity: %w", err)
	}
	for _, id := range found {
		if id.Name != name { // the server's name filter may be a substring match
			continue
		}
		p, err := objectPath("marketplace-site-agent-identities", id.UUID, "")
		if err != nil {
			return nil, fmt.Errorf("server returned identity with %w", err)
		}
		var out AgentIdentity
		if _, err := c.call(ctx, http.MethodPut, p, nil, req, &out); err != nil {
			return nil, fmt.Errorf("update agent identity: %w", err)
		}
		return &out, nil
	}

	var out AgentIdentity
	resp, err := c.call(ctx, http.MethodPost, identitiesPath, nil, req, &out)
	if err != nil {
		return nil, fmt.Errorf("create agent identity: %w", err)
	}
	out.Created = resp.Status == http.StatusCreated
	return &out, nil
}

// RegisterEventSubscription registers (or finds) the event subscription of
// identityUUID for objectType (path 1a, step 2).
func (c *Client) RegisterEventSubscription(ctx context.Context, identityUUID, objectType string) (*EventSubscription, error) {
	if err := checkObjectType(objectType); err != nil {
		return nil, err
	}
	p, err := objectPath("marketplace-site-agent-identities", identityUUID, "register_event_subscription")
	if err != nil {
		return nil, err
	}
	body := map[string]string{
		"observable_object_type": objectType,
		"description":            "eventfn: " + objectType,
	}
	var out EventSubscription
	resp, err := c.call(ctx, http.MethodPost, p, nil, body, &out)
	if err != nil {
		return nil, err
	}
	out.Created = resp.Status == http.StatusCreated
	return &out, nil
}

// CreateQueue creates (or finds) the queue of a subscription for one offering
// and object type (path 1a, step 3).
func (c *Client) CreateQueue(ctx context.Context, subscriptionUUID, offeringUUID, objectType string) (*SubscriptionQueue, error) {
	if err := checkObjectType(objectType); err != nil {
		return nil, err
	}
	off, err := checkUUID("offering", offeringUUID)
	if err != nil {
		return nil, err
	}
	p, err := objectPath("event-subscriptions", subscriptionUUID, "create_queue")
	if err != nil {
		return nil, err
	}
	var out SubscriptionQueue
	resp, err := c.call(ctx, http.MethodPost, p, nil,
		map[string]string{"offering_uuid": off, "object_type": objectType}, &out)
	if err != nil {
		return nil, err
	}
	out.Created = resp.Status == http.StatusCreated
	return &out, nil
}

// RegisterQueue registers (or refreshes) the single queue of an identity
// receiving objectTypes (path 1b). An empty list means all types.
func (c *Client) RegisterQueue(ctx context.Context, identityUUID string, objectTypes []string) (*AgentQueue, error) {
	types := make([]string, 0, len(objectTypes))
	for _, t := range objectTypes {
		if err := checkObjectType(t); err != nil {
			return nil, err
		}
		types = append(types, t)
	}
	p, err := objectPath("marketplace-site-agent-identities", identityUUID, "register_queue")
	if err != nil {
		return nil, err
	}
	var out AgentQueue
	if _, err := c.call(ctx, http.MethodPost, p, nil, map[string][]string{"object_types": types}, &out); err != nil {
		return nil, err
	}
	if out.QueueName == "" || out.RMQUsername == "" || out.VHost == "" {
		return nil, errors.New("waldur: register_queue answer lacks queue_name, rmq_username or vhost")
	}
	return &out, nil
}
