/** Serves candlelight's router from this service worker: its messages (configuration, local
 *  engine) and `/v1/chat/completions`, `/v1/models`, `/v1/metrics`. Call once, at the top level. */
export function installRouter(): void;
/** Answers a fetch event (a service worker's `FetchEvent`) that is one of the router's `/v1/`
 *  requests; false for any other. */
export function routerFetch(event: { request: Request; respondWith(response: Response | PromiseLike<Response>): void }): boolean;
