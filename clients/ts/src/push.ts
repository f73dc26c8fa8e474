// Notifications: subscribe a browser to Web Push with the server's VAPID key and register the
// subscription as a device (or remove both), and the inbox calls. The types below are the
// parts of the DOM's `PushManager` and `PushSubscription` these helpers use, so a service
// worker's `registration.pushManager` fits, and so does a test double.
import type { Client } from "@connectrpc/connect";
import {
  PushPlatform,
  type NotificationService,
  type ListNotificationsResponse,
  type PushDevice,
} from "./gen/epop/v1/notifications_pb.js";

/** What these helpers use of a `PushSubscription`. */
export interface PushSubscriptionLike {
  readonly endpoint: string;
  toJSON(): { endpoint?: string; keys?: Record<string, string> };
  unsubscribe(): Promise<boolean>;
}

/** What these helpers use of a `PushManager` (`registration.pushManager`). */
export interface PushManagerLike {
  subscribe(options: { userVisibleOnly: boolean; applicationServerKey: string }): Promise<PushSubscriptionLike>;
  getSubscription(): Promise<PushSubscriptionLike | null>;
}

/**
 * Subscribes this browser to Web Push with the server's VAPID key and registers the
 * subscription as a device of the signed-in user, named `name` (e.g. "Firefox on laptop").
 * Call it from a page whose service worker shows the pushes (`self.registration.showNotification`
 * with the JSON payload's `title` and `body`), after the user allowed notifications.
 */
export async function subscribeToPush(
  notifications: Client<typeof NotificationService>,
  pushManager: PushManagerLike,
  name: string,
): Promise<PushDevice> {
  const { vapidPublicKey } = await notifications.getPushConfig({});
  // The Push API takes the key as the base64url text the server serves.
  const subscription = await pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: vapidPublicKey });
  const json = subscription.toJSON();
  return notifications.registerPushDevice({
    platform: PushPlatform.WEB,
    address: subscription.endpoint,
    p256dh: json.keys?.p256dh ?? "",
    auth: json.keys?.auth ?? "",
    name,
  });
}

/** Ends this browser's push subscription and removes its device (`deviceId`) from the server. */
export async function unsubscribeFromPush(
  notifications: Client<typeof NotificationService>,
  pushManager: PushManagerLike,
  deviceId: string,
): Promise<void> {
  await (await pushManager.getSubscription())?.unsubscribe();
  await notifications.unregisterPushDevice({ id: deviceId });
}

/** One page of the inbox, newest first, with the unread count (`unreadOnly` for a badge list). */
export function inbox(
  notifications: Client<typeof NotificationService>,
  options: { pageSize?: number; pageToken?: string; unreadOnly?: boolean } = {},
): Promise<ListNotificationsResponse> {
  return notifications.listNotifications(options);
}

/** Marks the named notifications read, or all of them when none are named; answers the unread count. */
export async function markNotificationsRead(
  notifications: Client<typeof NotificationService>,
  ids: string[] = [],
): Promise<bigint> {
  const r = await notifications.markNotificationsRead({ notificationIds: ids, all: ids.length === 0 });
  return r.unreadCount;
}
