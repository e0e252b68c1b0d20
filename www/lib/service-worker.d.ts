/** Serves candlelight's router from this service worker: its messages (configuration, local
 *  engine) and `/v1/chat/completions`, `/v1/models`, `/v1/metrics`. Call once, at the top level. */
export function installRouter(): void;
/** Answers a fetch event (a service worker's `FetchEvent`) that is one of the router's `/v1/`
 *  requests; false for any other. */
export function routerFetch(event: { request: Request; respondWith(response: Response | PromiseLike<Response>): void }): boolean;
/** Whether a request loads a document or a worker of the service worker's origin: the
 *  responses `withCrossOriginIsolation` should go on. */
export function decidesIsolation(request: Request): boolean;
/** The response with COOP `same-origin` and COEP (`require-corp` by default, or
 *  `credentialless`) added, so the page is cross-origin isolated and gets the threaded build on
 *  a host that cannot send those headers. Every cross-origin subresource then needs CORS or
 *  `Cross-Origin-Resource-Policy` (`credentialless`: or goes without cookies; not in Safari).
 *  Redirects, errors and opaque responses pass unchanged. */
export function withCrossOriginIsolation(response: Response, options?: { coep?: 'require-corp' | 'credentialless' }): Response;
/** Answers a fetch event for a document or worker of this origin from the network with
 *  `withCrossOriginIsolation`; false for any other request. For a worker with no fetch handling
 *  of its own; isolation starts at the first visit the worker controls. */
export function isolationFetch(event: { request: Request; respondWith(response: Response | PromiseLike<Response>): void }, options?: { coep?: 'require-corp' | 'credentialless' }): boolean;
